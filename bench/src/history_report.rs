//! History benchmarks (issue #11): the recovery scenario's record, and
//! `report-history`, the tables of a run of bench/run.sh's history
//! scenarios: the same fan-out with history off and on side by side (their
//! ratio), and the mass-reconnect recoveries.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::report::{median, num, RunResult};

/// Target labels bench/run.sh gives the two halves of a pair.
pub const OFF: &str = "pushgate-hist-off";
pub const ON: &str = "pushgate-hist-on";

/// The required ratio of deliveries/s with history on to off.
const MIN_RATIO: f64 = 0.90;

/// The recovery scenario: what the clients checked and how long it took.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RecoveryReport {
    pub channel: String,
    pub workers: u64,
    /// Clients subscribed at the start.
    pub clients: u64,
    pub warmup: u64,
    pub missed: u64,
    /// Handshakes in flight while reconnecting (0 = all at once).
    pub reconnect_concurrency: u64,
    pub warm_published: u64,
    /// Clients that received every warm-up live.
    pub warm_done: u64,
    /// The gateway's connection gauge once everyone left, and how long it
    /// took to get there (the missed publications are made after).
    pub gauge_after_close: Option<f64>,
    pub settle_ms: u64,
    /// Reconnect: handshakes done, replies, clients that got every missed
    /// publication.
    pub reconnected: u64,
    pub subscribed: u64,
    pub recovered_clients: u64,
    /// Replies that listed the channel as recovered / unrecovered, or gave
    /// another position than the last publication.
    pub listed_recovered: u64,
    pub listed_unrecovered: u64,
    pub position_mismatch: u64,
    /// Missed publications due (clients × missed), received in order
    /// exactly once, again, missing, with another payload than published at
    /// that offset, before the reply, beyond the last one published.
    pub expected: u64,
    pub delivered: u64,
    pub dups: u64,
    pub gaps: u64,
    pub seq_mismatch: u64,
    pub early: u64,
    pub extras: u64,
    /// Clients that failed (connect, a close from the server, ...).
    pub failed: u64,
    /// From the reconnect command to the last client's handshake, reply,
    /// and last missed publication (None: not every client got there).
    pub all_connected_ms: Option<f64>,
    pub all_subscribed_ms: Option<f64>,
    pub all_recovered_ms: Option<f64>,
    /// Per client, time to its last missed publication.
    pub recovered_p50_ms: Option<f64>,
    pub recovered_p99_ms: Option<f64>,
    /// Server CPU from the reconnect command until every client recovered,
    /// and per recovered publication (handshakes and subscribes included).
    pub server_cpu_ms: f64,
    pub cpu_us_per_pub: f64,
    /// The control: the same clients reconnect and subscribe without
    /// `since`; the server's CPU for that, and the difference per recovered
    /// publication (what recovering itself costs).
    pub control_subscribed: u64,
    pub control_all_subscribed_ms: Option<f64>,
    pub control_cpu_ms: f64,
    pub net_cpu_us_per_pub: f64,
    /// The workers' CPU while reconnecting and recovering.
    pub client_cpu_ms: f64,
    /// Change of `pushgate_history_recoveries_total{result}` over the run.
    pub server_recovered: Option<f64>,
    pub server_unrecovered: Option<f64>,
    pub rss_before_recover_kb: u64,
    pub rss_after_recover_kb: u64,
}

impl RecoveryReport {
    /// Every client got every missed publication exactly once, in order,
    /// after a reply that said so.
    pub fn exact(&self) -> bool {
        self.failed == 0
            && self.recovered_clients == self.clients
            && self.listed_recovered == self.clients
            && self.delivered == self.expected
            && self.expected == self.clients * self.missed
            && self.listed_unrecovered
                + self.position_mismatch
                + self.dups
                + self.gaps
                + self.seq_mismatch
                + self.early
                + self.extras
                == 0
    }

    fn check(&self) -> String {
        if self.exact() {
            return "exact".into();
        }
        let mut v = Vec::new();
        let mut add = |n: u64, what: &str| {
            if n > 0 {
                v.push(format!("{n} {what}"));
            }
        };
        add(self.expected.saturating_sub(self.delivered), "lost");
        add(
            self.clients - self.recovered_clients.min(self.clients),
            "clients not recovered",
        );
        add(self.failed, "failed");
        add(self.listed_unrecovered, "unrecovered");
        add(self.position_mismatch, "wrong positions");
        add(self.dups, "dups");
        add(self.gaps, "gaps");
        add(self.seq_mismatch, "wrong payloads");
        add(self.early, "before the reply");
        add(self.extras, "extra");
        format!("FAILED: {}", v.join(", "))
    }
}

/// Lines printed after a recovery run's markdown row.
pub fn recovery_summary(r: &RunResult) -> Option<String> {
    let c = r.recovery.as_ref()?;
    let ms = |v: Option<f64>| num(v, 1);
    Some(format!(
        "recovery: {} clients on {:?} ({} worker processes), {} warm-ups received live by {}; \
         all left (gauge {} after {} ms); {} publications missed; reconnect {} at a time\n\
         reconnected {}, replies {} (recovered {}, unrecovered {}, wrong position {}), \
         recovered {}/{} clients, {}/{} publications, {} dups, {} gaps, {} wrong payloads, \
         {} before the reply, {} extra: {}\n\
         time from the reconnect: all connected {} ms, all replies {} ms, all recovered {} ms \
         (per client p50 {} ms, p99 {} ms)\n\
         server CPU {:.1} ms = {:.3} µs per recovered publication; control (reconnect without \
         since: all replies in {} ms) {:.1} ms; net {:.3} µs per recovered publication; \
         clients' CPU {:.1} ms; server counter recoveries {} recovered, {} unrecovered; \
         RSS {:.1} -> {:.1} MiB",
        c.clients,
        c.channel,
        c.workers,
        c.warm_published,
        c.warm_done,
        num(c.gauge_after_close, 0),
        c.settle_ms,
        c.missed,
        if c.reconnect_concurrency == 0 {
            "all".to_string()
        } else {
            c.reconnect_concurrency.to_string()
        },
        c.reconnected,
        c.subscribed,
        c.listed_recovered,
        c.listed_unrecovered,
        c.position_mismatch,
        c.recovered_clients,
        c.clients,
        c.delivered,
        c.expected,
        c.dups,
        c.gaps,
        c.seq_mismatch,
        c.early,
        c.extras,
        c.check(),
        ms(c.all_connected_ms),
        ms(c.all_subscribed_ms),
        ms(c.all_recovered_ms),
        ms(c.recovered_p50_ms),
        ms(c.recovered_p99_ms),
        c.server_cpu_ms,
        c.cpu_us_per_pub,
        ms(c.control_all_subscribed_ms),
        c.control_cpu_ms,
        c.net_cpu_us_per_pub,
        c.client_cpu_ms,
        num(c.server_recovered, 0),
        num(c.server_unrecovered, 0),
        c.rss_before_recover_kb as f64 / 1024.0,
        c.rss_after_recover_kb as f64 / 1024.0,
    ))
}

/// `report-history FILES`: the on/off pairs and the recovery runs.
pub fn summarize(files: &[String]) -> Result<String> {
    let mut runs: Vec<RunResult> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
        runs.push(serde_json::from_str(&text).with_context(|| format!("parsing {f}"))?);
    }
    runs.sort_by_key(|r| r.timestamp_ns);
    let mut out = String::new();
    let mut scenarios: Vec<&str> = Vec::new();
    for r in &runs {
        if r.target == ON && !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    scenarios.retain(|s| *s != "recovery");
    if !scenarios.is_empty() {
        out.push_str(&pairs(&runs, &scenarios));
    }
    let rec: Vec<&RunResult> = runs.iter().filter(|r| r.recovery.is_some()).collect();
    if !rec.is_empty() {
        out.push_str(&recoveries(&rec));
    }
    Ok(out)
}

fn pairs(runs: &[RunResult], scenarios: &[&str]) -> String {
    let mut s = String::from(
        "History off vs on (same scenario, same binary, the gateway restarted with and without \
         `[[history]] channels = \"*\"`; each pair back to back, off first in odd pairs, on first in even ones):\n\n\
         | scenario | history | runs | deliv/s (median) | deliv/s (range) | server CPU µs/deliv (median) | delivered/expected (all runs) | dups |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut ratios = String::from(
        "\n| scenario | on/off deliv/s (medians) | on/off per pair | on/off CPU µs/deliv (medians) | ≥ 90 %? |\n|---|---|---|---|---|\n",
    );
    for sc in scenarios {
        let of = |t: &str| -> Vec<&RunResult> {
            runs.iter()
                .filter(|r| r.target == t && r.scenario == *sc)
                .collect()
        };
        let (off, on) = (of(OFF), of(ON));
        let mut med = Vec::new();
        for (label, rs) in [("off", &off), ("on", &on)] {
            let rate: Vec<f64> = rs.iter().filter_map(|r| r.deliveries_per_sec).collect();
            let cpu: Vec<f64> = rs.iter().filter_map(|r| r.cpu_us_per_delivery).collect();
            let (lo, hi) = (
                rate.iter().copied().fold(f64::INFINITY, f64::min),
                rate.iter().copied().fold(0.0, f64::max),
            );
            let (m, c) = (median(rate.clone()), median(cpu));
            med.push((m, c));
            s.push_str(&format!(
                "| {sc} | {label} | {} | {} | {} | {} | {}/{} | {} |\n",
                rs.len(),
                num(m, 0),
                if rate.is_empty() {
                    "-".into()
                } else {
                    format!("{lo:.0}-{hi:.0}")
                },
                num(c, 3),
                rs.iter().map(|r| r.delivered).sum::<u64>(),
                rs.iter().map(|r| r.expected).sum::<u64>(),
                rs.iter().map(|r| r.dups).sum::<u64>(),
            ));
        }
        let ratio = match (med[0].0, med[1].0) {
            (Some(a), Some(b)) if a > 0.0 => Some(b / a),
            _ => None,
        };
        let cpu_ratio = match (med[0].1, med[1].1) {
            (Some(a), Some(b)) if a > 0.0 => Some(b / a),
            _ => None,
        };
        let per_pair: Vec<String> = off
            .iter()
            .zip(&on)
            .filter_map(|(a, b)| Some(b.deliveries_per_sec? / a.deliveries_per_sec?))
            .map(|x| format!("{x:.2}"))
            .collect();
        let lossless = off.iter().chain(&on).all(|r| r.lost == 0 && r.dups == 0);
        ratios.push_str(&format!(
            "| {sc} | {} | {} | {} | {} |\n",
            num(ratio, 2),
            per_pair.join(", "),
            num(cpu_ratio, 2),
            match ratio {
                Some(x) if x >= MIN_RATIO && lossless => "met",
                Some(_) if !lossless => "NO (loss or dups)",
                Some(_) => "NO",
                None => "-",
            }
        ));
    }
    s.push_str(&ratios);
    s
}

fn recoveries(rec: &[&RunResult]) -> String {
    let mut s = String::from(
        "\nMass reconnect with `since` (recovery):\n\n\
         | target | clients | missed | reconnect at once | recovered clients | recovered/expected pubs | check | all connected ms | all replies ms | all recovered ms | client p50 ms | client p99 ms | server CPU ms | µs/recovered pub | control CPU ms | net µs/recovered pub |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let ms = |v: Option<f64>| num(v, 1);
    for r in rec {
        let Some(c) = r.recovery.as_ref() else {
            continue;
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {}/{} | {}/{} | {} | {} | {} | {} | {} | {} | {:.1} | {:.3} | {:.1} | {:.3} |\n",
            r.target,
            c.clients,
            c.missed,
            if c.reconnect_concurrency == 0 {
                "all".to_string()
            } else {
                c.reconnect_concurrency.to_string()
            },
            c.recovered_clients,
            c.clients,
            c.delivered,
            c.expected,
            c.check(),
            ms(c.all_connected_ms),
            ms(c.all_subscribed_ms),
            ms(c.all_recovered_ms),
            ms(c.recovered_p50_ms),
            ms(c.recovered_p99_ms),
            c.server_cpu_ms,
            c.cpu_us_per_pub,
            c.control_cpu_ms,
            c.net_cpu_us_per_pub,
        ));
    }
    let col = |f: fn(&RecoveryReport) -> Option<f64>| -> Option<f64> {
        median(rec.iter().filter_map(|r| f(r.recovery.as_ref()?)).collect())
    };
    s.push_str(&format!(
        "| **median of {}** | | | | | | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
        rec.len(),
        if rec
            .iter()
            .all(|r| r.recovery.as_ref().is_some_and(RecoveryReport::exact))
        {
            "all exact"
        } else {
            "NOT all exact"
        },
        ms(col(|c| c.all_connected_ms)),
        ms(col(|c| c.all_subscribed_ms)),
        ms(col(|c| c.all_recovered_ms)),
        ms(col(|c| c.recovered_p50_ms)),
        ms(col(|c| c.recovered_p99_ms)),
        num(col(|c| Some(c.server_cpu_ms)), 1),
        num(col(|c| Some(c.cpu_us_per_pub)), 3),
        num(col(|c| Some(c.control_cpu_ms)), 1),
        num(col(|c| Some(c.net_cpu_us_per_pub)), 3),
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &str, scenario: &str, ts: u64, rate: f64) -> RunResult {
        RunResult {
            target: target.into(),
            scenario: scenario.into(),
            timestamp_ns: ts,
            deliveries_per_sec: Some(rate),
            cpu_us_per_delivery: Some(1.0),
            delivered: 10,
            expected: 10,
            ..Default::default()
        }
    }

    #[test]
    fn pairs_ratio_and_verdict() {
        let runs = vec![
            run(OFF, "burst-channel", 1, 100.0),
            run(ON, "burst-channel", 2, 95.0),
            run(OFF, "burst-channel", 3, 200.0),
            run(ON, "burst-channel", 4, 150.0),
            run(OFF, "burst-channel", 5, 100.0),
            run(ON, "burst-channel", 6, 80.0),
        ];
        let t = pairs(&runs, &["burst-channel"]);
        // Medians 100 (off) and 95 (on): 0.95, met; pairs in time order.
        assert!(
            t.contains("| burst-channel | 0.95 | 0.95, 0.75, 0.80 | 1.00 | met |"),
            "{t}"
        );
        let mut lossy = runs.clone();
        lossy[1].lost = 1;
        assert!(pairs(&lossy, &["burst-channel"]).contains("NO (loss or dups)"));
    }

    #[test]
    fn exact_needs_every_check() {
        let mut c = RecoveryReport {
            clients: 2,
            missed: 3,
            recovered_clients: 2,
            listed_recovered: 2,
            expected: 6,
            delivered: 6,
            ..Default::default()
        };
        assert!(c.exact());
        assert_eq!(c.check(), "exact");
        c.dups = 1;
        assert!(!c.exact());
        assert_eq!(c.check(), "FAILED: 1 dups");
        c.dups = 0;
        c.delivered = 5;
        assert!(c.check().starts_with("FAILED: 1 lost"));
    }
}
