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
    pub errors: Vec<String>,
}

fn ms(us: Option<u64>) -> String {
    us.map_or("-".into(), |v| format!("{:.2}", v as f64 / 1000.0))
}

fn num(v: Option<f64>, prec: usize) -> String {
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
            get: |r| (r.expected > 0).then(|| 100.0 * r.lost as f64 / r.expected as f64),
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
            title: "last-recipient p99 ms",
            scenario: "latency",
            get: |r| us_to_ms(r.last_p99_us),
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

fn us_to_ms(v: Option<u64>) -> Option<f64> {
    v.map(|v| v as f64 / 1000.0)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
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
    let is_peer = |t: &str| !t.starts_with("pushgate");
    let mut out = String::new();
    out.push_str("| target |");
    for c in &cols {
        out.push_str(&format!(" {} |", c.title));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(cols.len()));
    out.push('\n');
    for (ti, t) in targets.iter().enumerate() {
        out.push_str(&format!("| {t} |"));
        for (ci, c) in cols.iter().enumerate() {
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

    #[test]
    fn summary_ratios_against_best_peer() {
        let dir = std::env::temp_dir().join(format!("pgb-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut files = Vec::new();
        for (i, r) in [
            run("pushgate", "burst", 300.0),
            run("go-hub", "burst", 100.0),
            run("go-hub", "burst", 200.0),
            run("node-ws", "burst", 120.0),
        ]
        .iter()
        .enumerate()
        {
            let f = dir.join(format!("{i}.json"));
            std::fs::write(&f, serde_json::to_string(r).unwrap()).unwrap();
            files.push(f.to_string_lossy().into_owned());
        }
        let s = summarize(&files).unwrap();
        // go-hub median 150 is the best peer; pushgate is 2× that.
        assert!(s.contains("| pushgate | 300 (2.00×)"), "{s}");
        assert!(s.contains("| go-hub | 150 (1.00×)"), "{s}");
        assert!(markdown_row(&files_first(&files[0])).starts_with("| pushgate | burst |"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn files_first(f: &str) -> RunResult {
        serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap()
    }
}
