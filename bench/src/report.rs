//! Result records: JSON files, one markdown row per run, and a summary table
//! (medians over repeats, ratios against the best reference peer).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResult {
    pub target: String,
    pub scenario: String,
    pub timestamp_ns: u64,
    pub conns: u64,
    pub connected: u64,
    pub handshake_failed: u64,
    pub size: u64,
    pub published: u64,
    pub publish_rejected: u64,
    pub publish_errors: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub dups: u64,
    /// Frames without the bench marker (pushgate's "connected" hello).
    pub foreign_frames: u64,
    pub bad_seq: u64,
    pub pings: u64,
    pub server_closes: u64,
    /// Connections the server closed at the TCP level without a CLOSE frame.
    #[serde(default)]
    pub server_eofs: u64,
    pub open_at_end: u64,
    /// First publish → last delivery.
    pub elapsed_s: Option<f64>,
    pub deliveries_per_sec: Option<f64>,
    pub publish_per_sec: Option<f64>,
    /// Server CPU from first publish until the last delivery was seen.
    pub server_cpu_ms: Option<f64>,
    pub cpu_us_per_delivery: Option<f64>,
    pub lat_p50_us: Option<u64>,
    pub lat_p99_us: Option<u64>,
    pub lat_p999_us: Option<u64>,
    pub lat_max_us: Option<u64>,
    /// Latency distribution as (percentile, µs) pairs, [`PERCENTILES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lat_percentiles: Vec<(f64, u64)>,
    /// Paced scenarios: the time to write one frame to every connection
    /// once, measured in the same run before the clients connected (floor.rs).
    #[serde(default)]
    pub floor_us: Option<u64>,
    /// The floor was scaled from fewer socket pairs (floor::MAX_PAIRS).
    #[serde(default)]
    pub floor_scaled: bool,
    /// Per publication, time until its last recipient got it.
    pub last_p50_us: Option<u64>,
    pub last_p99_us: Option<u64>,
    pub rss_before_kb: Option<u64>,
    pub rss_connected_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
    pub rss_per_conn_bytes: Option<f64>,
    pub connect_cpu_ms: Option<f64>,
    pub slow_conns: Option<u64>,
    /// Slow clients that got a CLOSE frame (pushgate: 4008 when its
    /// per-client queue overflowed).
    #[serde(default)]
    pub slow_closed_by_server: Option<u64>,
    /// Slow clients whose TCP connection the server closed without a CLOSE
    /// frame (pushgate: its close frame queued behind unread data).
    #[serde(default)]
    pub slow_eofs: Option<u64>,
    /// Slow clients whose TCP connection was still open after draining.
    #[serde(default)]
    pub slow_open_at_end: Option<u64>,
    /// Publications the slow clients received once they started reading.
    #[serde(default)]
    pub slow_delivered: Option<u64>,
    /// Load generator's own CPU (workers + coordinator), whole run.
    pub client_cpu_ms: f64,
    /// The coordinator's share (publishing, reporting), whole run.
    #[serde(default)]
    pub coordinator_cpu_ms: f64,
    /// Receiving workers' CPU after the handshakes, per delivery: shows the
    /// generator stays cheaper than the server it measures.
    pub client_cpu_us_per_delivery: Option<f64>,
    /// Worker memory growth while connecting, per connection.
    #[serde(default)]
    pub client_rss_per_conn_bytes: Option<f64>,
    /// Socket reads that returned data (delivered / reads = frames per read).
    #[serde(default)]
    pub client_reads: u64,
    /// Bytes of complete frames the clients received, headers included
    /// (`wire_bytes / delivered`: bytes on the wire per delivery).
    #[serde(default)]
    pub wire_bytes: u64,
    pub errors: Vec<String>,
    /// Churn scenario: the churning connections and the leak check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnReport>,
    /// Runs against several nodes (`--ws A,B,C`): per-node figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::ClusterReport>,
    /// The recovery scenario (history): the mass reconnect's checks and times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<crate::history_report::RecoveryReport>,
}

/// Percentiles stored in `lat_percentiles` (0 = min, 100 = max): dense
/// enough in the tail for an HdrHistogram-style percentile plot.
pub const PERCENTILES: &[f64] = &[
    0.0, 10.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 90.0, 95.0, 97.0, 98.0, 99.0,
    99.5, 99.7, 99.9, 99.95, 99.97, 99.99, 99.995, 99.999, 100.0,
];

/// One sample of the server during a churn run (every second).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since publishing (and churning) started.
    pub t_s: f64,
    /// `pushgate_connections` summed over shards (pushgate only).
    pub gauge: Option<f64>,
    pub rss_kb: u64,
    /// Churn connections the generator had open.
    pub churn_open: u64,
}

/// Churn scenario: what the short-lived connections did, and whether the
/// server's connection gauge and memory came back afterwards.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChurnReport {
    /// Target opening rate (connections/s) and mean lifetime.
    pub rate: f64,
    pub hold_ms: u64,
    pub attempted: u64,
    pub opened: u64,
    pub failed: u64,
    /// Opened / time spent opening.
    pub opened_per_sec: f64,
    pub closed_clean: u64,
    pub clean_unanswered: u64,
    pub closed_fin: u64,
    pub closed_rst: u64,
    pub closed_by_server: u64,
    pub max_open: u64,
    pub handshake_p50_us: Option<u64>,
    pub handshake_p99_us: Option<u64>,
    pub handshake_max_us: Option<u64>,
    /// Gauge before the stable clients connected, once they had, min and
    /// max while churning, after the churn settled (stable clients still
    /// connected), and after the stable clients left too.
    pub gauge_before: Option<f64>,
    pub gauge_connected: Option<f64>,
    pub gauge_during_min: Option<f64>,
    pub gauge_during_max: Option<f64>,
    pub gauge_after_churn: Option<f64>,
    pub gauge_after_close: Option<f64>,
    /// Time until the gauge reached its expected value (bounded at 10 s).
    pub settle_after_churn_ms: Option<u64>,
    pub settle_after_close_ms: Option<u64>,
    /// Change of `pushgate_connections_opened_total` over the whole run,
    /// and of `pushgate_connections_closed_total` per reason.
    pub opened_total_delta: Option<f64>,
    pub closed_total_delta: BTreeMap<String, f64>,
    pub rss_before_kb: u64,
    pub rss_connected_kb: u64,
    pub rss_during_max_kb: u64,
    pub rss_after_churn_kb: u64,
    pub rss_after_close_kb: u64,
    pub timeline: Vec<TimelinePoint>,
    pub errors: Vec<String>,
}

/// Human-readable churn lines printed after the run's markdown row.
pub fn churn_summary(r: &RunResult) -> Option<String> {
    let c = r.churn.as_ref()?;
    let g = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    let mut s = format!(
        "churn: {} opened of {} ({} failed) at {:.0}/s (target {:.0}/s), mean stay {} ms, \
         at most {} open; left: {} close handshake ({} unanswered), {} FIN, {} RST, \
         {} closed by server; handshake p50 {} ms, p99 {} ms\n",
        c.opened,
        c.attempted,
        c.failed,
        c.opened_per_sec,
        c.rate,
        c.hold_ms,
        c.max_open,
        c.closed_clean,
        c.clean_unanswered,
        c.closed_fin,
        c.closed_rst,
        c.closed_by_server,
        ms(c.handshake_p50_us),
        ms(c.handshake_p99_us),
    );
    s.push_str(&format!(
        "stable clients: {} connected, {}/{} delivered, {} lost, {} dups, p50 {} ms, \
         p99 {} ms, p999 {} ms, max {} ms\n",
        r.connected,
        r.delivered,
        r.expected,
        r.lost,
        r.dups,
        ms(r.lat_p50_us),
        ms(r.lat_p99_us),
        ms(r.lat_p999_us),
        ms(r.lat_max_us),
    ));
    s.push_str(&format!(
        "gauge pushgate_connections: before {}, stable connected {}, during {}..{}, \
         after churn {} ({} ms), after all closed {} ({} ms)",
        g(c.gauge_before),
        g(c.gauge_connected),
        g(c.gauge_during_min),
        g(c.gauge_during_max),
        g(c.gauge_after_churn),
        c.settle_after_churn_ms
            .map_or("-".into(), |v| v.to_string()),
        g(c.gauge_after_close),
        c.settle_after_close_ms
            .map_or("-".into(), |v| v.to_string()),
    ));
    if let (Some(a), Some(b), Some(x), Some(y)) = (
        c.gauge_after_churn,
        c.gauge_connected,
        c.gauge_after_close,
        c.gauge_before,
    ) {
        let ok = a == b && x == y;
        s.push_str(if ok {
            " → back to baseline"
        } else {
            " → NOT back to baseline (leak?)"
        });
    }
    s.push('\n');
    if let Some(o) = c.opened_total_delta {
        let closed: f64 = c.closed_total_delta.values().sum();
        s.push_str(&format!(
            "server counters over the run: {o:.0} opened, {closed:.0} closed {:?}\n",
            c.closed_total_delta
        ));
    }
    let mb = |kb: u64| kb as f64 / 1024.0;
    s.push_str(&format!(
        "server RSS MiB: before {:.1}, stable connected {:.1}, max during {:.1}, after churn {:.1}, \
         after all closed {:.1} (allocators keep freed pages: compare, do not expect equality)",
        mb(c.rss_before_kb),
        mb(c.rss_connected_kb),
        mb(c.rss_during_max_kb),
        mb(c.rss_after_churn_kb),
        mb(c.rss_after_close_kb),
    ));
    if !c.errors.is_empty() {
        s.push_str(&format!("\nchurn errors: {:?}", c.errors));
    }
    Some(s)
}

pub(crate) fn ms(us: Option<u64>) -> String {
    us.map_or("-".into(), |v| format!("{:.2}", v as f64 / 1000.0))
}

pub(crate) fn num(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.prec$}"))
}

pub const ROW_HEADER: &str = "| target | scenario | connected | delivered/expected | dups | deliv/s | CPU µs/deliv | p50 ms | p99 ms | p999 ms | last p99 ms | RSS B/conn | client µs/deliv |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|";

/// One markdown row summarising a single run.
pub fn markdown_row(r: &RunResult) -> String {
    format!(
        "| {} | {} | {}/{} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        r.target,
        r.scenario,
        r.connected,
        r.conns,
        r.delivered,
        r.expected,
        r.dups,
        num(r.deliveries_per_sec, 0),
        num(r.cpu_us_per_delivery, 3),
        ms(r.lat_p50_us),
        ms(r.lat_p99_us),
        ms(r.lat_p999_us),
        ms(r.last_p99_us),
        num(r.rss_per_conn_bytes, 0),
        num(r.client_cpu_us_per_delivery, 3),
    )
}

/// A summary column: which scenario and metric, and whether higher is better.
struct Column {
    title: &'static str,
    scenario: &'static str,
    get: fn(&RunResult) -> Option<f64>,
    higher_better: bool,
    prec: usize,
}

fn columns() -> Vec<Column> {
    vec![
        Column {
            title: "burst deliv/s",
            scenario: "burst",
            get: |r| r.deliveries_per_sec,
            higher_better: true,
            prec: 0,
        },
        Column {
            title: "burst CPU µs/deliv",
            scenario: "burst",
            get: |r| r.cpu_us_per_delivery,
            higher_better: false,
            prec: 3,
        },
        Column {
            title: "burst loss %",
            scenario: "burst",
            get: loss_pct,
            higher_better: false,
            prec: 2,
        },
        Column {
            title: "burst client µs/deliv",
            scenario: "burst",
            get: |r| r.client_cpu_us_per_delivery,
            higher_better: false,
            prec: 3,
        },
        Column {
            title: "lat p50 ms",
            scenario: "latency",
            get: |r| us_to_ms(r.lat_p50_us),
            higher_better: false,
            prec: 2,
        },
        Column {
            title: "lat p99 ms",
            scenario: "latency",
            get: |r| us_to_ms(r.lat_p99_us),
            higher_better: false,
            prec: 2,
        },
        Column {
            title: "lat p999 ms",
            scenario: "latency",
            get: |r| us_to_ms(r.lat_p999_us),
            higher_better: false,
            prec: 2,
        },
        Column {
            title: "lat floor ms",
            scenario: "latency",
            get: |r| us_to_ms(r.floor_us),
            higher_better: false,
            prec: 2,
        },
        Column {
            title: "lat p50 ×floor",
            scenario: "latency",
            get: |r| over_floor(r.lat_p50_us, r.floor_us),
            higher_better: false,
            prec: 2,
        },
        Column {
            title: "lat p99 ×floor",
            scenario: "latency",
            get: |r| over_floor(r.lat_p99_us, r.floor_us),
            higher_better: false,
            prec: 2,
        },
        Column {
            title: "last-recipient p99 ms",
            scenario: "latency",
            get: |r| us_to_ms(r.last_p99_us),
            higher_better: false,
            prec: 2,
        },
        // The steady regime's CPU (#14 item 2): the server's alone, and with the
        // clients' (on loopback the receiver's kernel work is charged to whichever
        // side runs it, so a server can look cheap by leaving work to its clients).
        Column {
            title: "lat CPU µs/deliv",
            scenario: "latency",
            get: |r| r.cpu_us_per_delivery,
            higher_better: false,
            prec: 3,
        },
        Column {
            title: "lat server + client µs/deliv",
            scenario: "latency",
            get: |r| Some(r.cpu_us_per_delivery? + r.client_cpu_us_per_delivery?),
            higher_better: false,
            prec: 2,
        },
        Column {
            title: "sustained p99 ms",
            scenario: "sustained",
            get: |r| us_to_ms(r.lat_p99_us),
            higher_better: false,
            prec: 2,
        },
        Column {
            title: "sustained loss %",
            scenario: "sustained",
            get: loss_pct,
            higher_better: false,
            prec: 2,
        },
        Column {
            title: "churn p99 ms",
            scenario: "churn",
            get: |r| us_to_ms(r.lat_p99_us),
            higher_better: false,
            prec: 2,
        },
        Column {
            title: "churn loss %",
            scenario: "churn",
            get: loss_pct,
            higher_better: false,
            prec: 2,
        },
        Column {
            title: "idle B/conn",
            scenario: "idle",
            get: |r| r.rss_per_conn_bytes,
            higher_better: false,
            prec: 0,
        },
        Column {
            title: "idle connected",
            scenario: "idle",
            get: |r| Some(r.connected as f64),
            higher_better: true,
            prec: 0,
        },
    ]
}

fn loss_pct(r: &RunResult) -> Option<f64> {
    (r.expected > 0).then(|| 100.0 * r.lost as f64 / r.expected as f64)
}

/// A latency as a multiple of the run's floor (floor.rs).
fn over_floor(lat_us: Option<u64>, floor_us: Option<u64>) -> Option<f64> {
    match (lat_us, floor_us) {
        (Some(l), Some(f)) if f > 0 => Some(l as f64 / f as f64),
        _ => None,
    }
}

fn us_to_ms(v: Option<u64>) -> Option<f64> {
    v.map(|v| v as f64 / 1000.0)
}

pub(crate) fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// Read result files and print one row per target: medians over repeats,
/// each with its ratio to the best reference peer (targets not named
/// `pushgate*`) for that metric.
pub fn summarize(files: &[String]) -> Result<String> {
    let mut runs: Vec<RunResult> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
        runs.push(serde_json::from_str(&text).with_context(|| format!("parsing {f}"))?);
    }
    // Keep targets in first-seen order (pushgate first, as run).
    let mut targets: Vec<String> = Vec::new();
    for r in &runs {
        if !targets.contains(&r.target) {
            targets.push(r.target.clone());
        }
    }
    let cols = columns();
    let mut medians: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for (ti, t) in targets.iter().enumerate() {
        for (ci, c) in cols.iter().enumerate() {
            let vals: Vec<f64> = runs
                .iter()
                .filter(|r| &r.target == t && r.scenario == c.scenario)
                .filter_map(|r| (c.get)(r))
                .collect();
            if let Some(m) = median(vals) {
                medians.insert((ti, ci), m);
            }
        }
    }
    // Only columns some run has a value for (scenarios not run drop out).
    let shown: Vec<usize> = (0..cols.len())
        .filter(|ci| medians.keys().any(|(_, c)| c == ci))
        .collect();
    let is_peer = |t: &str| !t.starts_with("pushgate");
    let mut out = String::new();
    out.push_str("| target |");
    for &ci in &shown {
        out.push_str(&format!(" {} |", cols[ci].title));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(shown.len()));
    out.push('\n');
    for (ti, t) in targets.iter().enumerate() {
        // Targets only in scenarios without a column (the history pairs:
        // `report-history`) would be a row of dashes.
        if !shown.iter().any(|&ci| medians.contains_key(&(ti, ci))) {
            continue;
        }
        out.push_str(&format!("| {t} |"));
        for &ci in &shown {
            let c = &cols[ci];
            let best = targets
                .iter()
                .enumerate()
                .filter(|(_, name)| is_peer(name))
                .filter_map(|(i, _)| medians.get(&(i, ci)).copied())
                .reduce(|a, b| if (a > b) == c.higher_better { a } else { b });
            let cell = match medians.get(&(ti, ci)) {
                None => "-".to_string(),
                Some(&v) => match best {
                    Some(b) if b != 0.0 && v.is_finite() => {
                        format!("{v:.p$} ({:.2}×)", v / b, p = c.prec)
                    }
                    _ => format!("{v:.p$}", p = c.prec),
                },
            };
            out.push_str(&format!(" {cell} |"));
        }
        out.push('\n');
    }
    out.push_str("\nMedians over repeats; (N×) = value / best reference peer for that column");
    out.push_str(" (for deliv/s and connected higher is better, elsewhere lower is better).\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &str, scenario: &str, dps: f64) -> RunResult {
        RunResult {
            target: target.into(),
            scenario: scenario.into(),
            deliveries_per_sec: Some(dps),
            expected: 100,
            lost: 1,
            ..Default::default()
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    /// Writes `runs` as result files in a fresh directory named after `tag`.
    fn write_runs(tag: &str, runs: &[RunResult]) -> (std::path::PathBuf, Vec<String>) {
        let dir = std::env::temp_dir().join(format!("pgb-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let f = dir.join(format!("{i}.json"));
                std::fs::write(&f, serde_json::to_string(r).unwrap()).unwrap();
                f.to_string_lossy().into_owned()
            })
            .collect();
        (dir, files)
    }

    #[test]
    fn summary_ratios_against_best_peer() {
        let (dir, files) = write_runs(
            "test",
            &[
                run("pushgate", "burst", 300.0),
                run("go-hub", "burst", 100.0),
                run("go-hub", "burst", 200.0),
                run("node-ws", "burst", 120.0),
            ],
        );
        let s = summarize(&files).unwrap();
        // go-hub median 150 is the best peer; pushgate is 2× that.
        assert!(s.contains("| pushgate | 300 (2.00×)"), "{s}");
        assert!(s.contains("| go-hub | 150 (1.00×)"), "{s}");
        assert!(markdown_row(&files_first(&files[0])).starts_with("| pushgate | burst |"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn steady_cpu_alone_and_with_the_clients() {
        let lat = |target: &str, server: f64, client: f64| RunResult {
            target: target.into(),
            scenario: "latency".into(),
            cpu_us_per_delivery: Some(server),
            client_cpu_us_per_delivery: Some(client),
            ..Default::default()
        };
        let (dir, files) = write_runs(
            "cpu",
            &[
                lat("pushgate", 5.0, 5.0),
                lat("uws", 6.0, 4.0),
                lat("rust-naive", 4.0, 8.0),
            ],
        );
        let s = summarize(&files).unwrap();
        // Server alone: rust-naive's 4.0 is the best peer; with the clients, uws's 10.0.
        assert!(
            s.contains("lat CPU µs/deliv | lat server + client µs/deliv |"),
            "{s}"
        );
        assert!(
            s.contains("| pushgate | 5.000 (1.25×) | 10.00 (1.00×) |"),
            "{s}"
        );
        assert!(
            s.contains("| rust-naive | 4.000 (1.00×) | 12.00 (1.20×) |"),
            "{s}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn files_first(f: &str) -> RunResult {
        serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap()
    }
}
