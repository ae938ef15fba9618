//! Runs against several nodes joined through a broker (pushgate with
//! `broker = redis`): clients spread over the nodes (`--ws A,B,C`, one share
//! per URL), publications into the first node, and per-node figures: clients
//! held, the server's own connection gauge, what each node's clients
//! received, RSS and CPU of every node and of Redis (`--pid P1,P2,P3`,
//! `--node-http`, `--redis-pid`).
//!
//! `report-cluster FILES` turns the JSON results of bench/cluster.sh into
//! the tables of docs/benchmarks.md ("Cluster (Redis)").

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::metrics;
use crate::proc_stats::{self, ProcSample};
use crate::report::{median, ms, num, RunResult};
use crate::target::Endpoint;

/// One node of a multi-node run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeReport {
    pub ws: String,
    pub pid: Option<String>,
    /// Our connections to this node that completed the handshake.
    pub clients: u64,
    /// The node's `pushgate_connections` once every client connected.
    pub gauge: Option<f64>,
    pub expected: u64,
    pub delivered: u64,
    pub dups: u64,
    pub rss_before_kb: u64,
    pub rss_connected_kb: u64,
    pub rss_after_kb: u64,
    /// CPU spent from the first publication to the last result.
    pub cpu_ms: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterReport {
    pub nodes: Vec<NodeReport>,
    pub redis_rss_kb: Option<u64>,
    pub redis_cpu_ms: Option<f64>,
    /// Nodes + Redis, publish phase.
    pub server_cpu_ms_total: f64,
    /// Publications accepted / (first publication → last delivery).
    pub pubs_per_sec_e2e: Option<f64>,
}

/// Samples of every node (and Redis) taken at one point of the run.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    nodes: Vec<ProcSample>,
    redis: Option<ProcSample>,
}

pub fn sample(pids: &[String], redis_pid: Option<&str>) -> Samples {
    Samples {
        nodes: pids
            .iter()
            .map(|p| proc_stats::sample(p).unwrap_or_default())
            .collect(),
        redis: redis_pid.and_then(|p| proc_stats::sample(p).ok()),
    }
}

/// `pushgate_connections` of each node (`--node-http` base URLs).
pub async fn gauges(node_http: &[String]) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(node_http.len());
    for u in node_http {
        let g = match Endpoint::parse(u, "http") {
            Ok(ep) => metrics::scrape(&ep).await.ok().flatten(),
            Err(_) => None,
        };
        out.push(g.map(|s| s.connections));
    }
    out
}

/// Per-node counts from the workers: (node index, clients, expected,
/// delivered, dups) per worker.
pub struct WorkerTally {
    pub node: usize,
    pub clients: u64,
    pub expected: u64,
    pub delivered: u64,
    pub dups: u64,
}

#[allow(clippy::too_many_arguments)]
pub fn build(
    ws_urls: &[String],
    pids: &[String],
    gauges: &[Option<f64>],
    tallies: &[WorkerTally],
    before_connect: &Samples,
    before_pub: &Samples,
    after: &Samples,
    r: &RunResult,
) -> ClusterReport {
    let mut nodes: Vec<NodeReport> = ws_urls
        .iter()
        .enumerate()
        .map(|(k, ws)| {
            let s = |v: &Samples| v.nodes.get(k).copied().unwrap_or_default();
            NodeReport {
                ws: ws.clone(),
                pid: pids.get(k).cloned(),
                gauge: gauges.get(k).copied().flatten(),
                rss_before_kb: s(before_connect).rss_kb,
                rss_connected_kb: s(before_pub).rss_kb,
                rss_after_kb: s(after).rss_kb,
                cpu_ms: s(after).cpu_ms_since(&s(before_pub)),
                ..Default::default()
            }
        })
        .collect();
    for t in tallies {
        if let Some(n) = nodes.get_mut(t.node) {
            n.clients += t.clients;
            n.expected += t.expected;
            n.delivered += t.delivered;
            n.dups += t.dups;
        }
    }
    let redis_cpu_ms = match (&after.redis, &before_pub.redis) {
        (Some(a), Some(b)) => Some(a.cpu_ms_since(b)),
        _ => None,
    };
    let server_cpu_ms_total =
        nodes.iter().map(|n| n.cpu_ms).sum::<f64>() + redis_cpu_ms.unwrap_or(0.0);
    ClusterReport {
        nodes,
        redis_rss_kb: after.redis.map(|s| s.rss_kb),
        redis_cpu_ms,
        server_cpu_ms_total,
        pubs_per_sec_e2e: r
            .elapsed_s
            .filter(|s| *s > 0.0)
            .map(|s| r.published as f64 / s),
    }
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Lines printed after a multi-node run's markdown row.
pub fn summary(r: &RunResult) -> Option<String> {
    let c = r.cluster.as_ref()?;
    let mut s = format!(
        "cluster: {} nodes, {} clients, {} publications accepted ({} rejected, {} errors) at \
         {}/s into node 1, {}/s end to end (first publication → last delivery), {} deliveries/s, \
         {}/{} delivered, {} lost, {} dups; CPU nodes+redis {:.0} ms",
        c.nodes.len(),
        r.connected,
        r.published,
        r.publish_rejected,
        r.publish_errors,
        num(r.publish_per_sec, 0),
        num(c.pubs_per_sec_e2e, 0),
        num(r.deliveries_per_sec, 0),
        r.delivered,
        r.expected,
        r.lost,
        r.dups,
        c.server_cpu_ms_total,
    );
    for (k, n) in c.nodes.iter().enumerate() {
        s.push_str(&format!(
            "\n  node {}: {} clients (gauge {}), {}/{} delivered, {} dups, RSS MiB {:.1} → {:.1} \
             connected → {:.1} after, CPU {:.0} ms",
            k + 1,
            n.clients,
            n.gauge.map_or("-".into(), |g| format!("{g:.0}")),
            n.delivered,
            n.expected,
            n.dups,
            mib(n.rss_before_kb),
            mib(n.rss_connected_kb),
            mib(n.rss_after_kb),
            n.cpu_ms,
        ));
    }
    if let (Some(rss), Some(cpu)) = (c.redis_rss_kb, c.redis_cpu_ms) {
        s.push_str(&format!(
            "\n  redis: RSS {:.1} MiB, CPU {cpu:.0} ms",
            mib(rss)
        ));
    }
    Some(s)
}

/// Runs grouped by (target, scenario, connections), in first-seen order.
fn groups(runs: &[RunResult]) -> Vec<Vec<&RunResult>> {
    let mut out: Vec<Vec<&RunResult>> = Vec::new();
    for r in runs {
        let key = |x: &RunResult| (x.target.clone(), x.scenario.clone(), x.conns);
        match out.iter_mut().find(|g| key(g[0]) == key(r)) {
            Some(g) => g.push(r),
            None => out.push(vec![r]),
        }
    }
    out
}

fn med(g: &[&RunResult], f: impl Fn(&RunResult) -> Option<f64>) -> Option<f64> {
    median(g.iter().filter_map(|r| f(r)).collect())
}

fn med_us(g: &[&RunResult], f: impl Fn(&RunResult) -> Option<u64>) -> Option<u64> {
    med(g, |r| f(r).map(|v| v as f64)).map(|v| v.round() as u64)
}

/// Tables for docs/benchmarks.md: medians over repeats; lost, dups and
/// failed handshakes are totals over every run of the row.
pub fn summarize(files: &[String]) -> Result<String> {
    let mut runs: Vec<RunResult> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
        runs.push(serde_json::from_str(&text).with_context(|| format!("parsing {f}"))?);
    }
    let gs = groups(&runs);
    let total = |g: &[&RunResult], f: fn(&RunResult) -> u64| g.iter().map(|r| f(r)).sum::<u64>();
    let mut out = String::new();

    out.push_str(
        "Throughput (burst, publications into node 1, every client counts every delivery; \
         `cluster`: broadcasts, `channels`: one channel each, history on or off):\n\n\
         | target | scenario | conns (connected) | runs | pubs/s accepted | pubs/s end to end | deliveries/s | \
         delivered/expected (all runs) | lost | dups | CPU nodes+redis µs/deliv |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let burst = |g: &&Vec<&RunResult>| matches!(g[0].scenario.as_str(), "cluster" | "channels");
    for g in gs.iter().filter(burst) {
        let cpu = med(g, |r| {
            let c = r.cluster.as_ref()?;
            (r.delivered > 0).then(|| c.server_cpu_ms_total * 1000.0 / r.delivered as f64)
        });
        out.push_str(&format!(
            "| {} | {} | {} ({}) | {} | {} | {} | {} | {}/{} | {} | {} | {} |\n",
            g[0].target,
            g[0].scenario,
            g[0].conns,
            med(g, |r| Some(r.connected as f64)).unwrap_or(0.0),
            g.len(),
            num(med(g, |r| r.publish_per_sec), 0),
            num(
                med(g, |r| r.cluster.as_ref().and_then(|c| c.pubs_per_sec_e2e)),
                0
            ),
            num(med(g, |r| r.deliveries_per_sec), 0),
            total(g, |r| r.delivered),
            total(g, |r| r.expected),
            total(g, |r| r.lost),
            total(g, |r| r.dups),
            num(cpu, 3),
        ));
    }

    out.push_str(
        "\nLatency (paced, publish → receive, payload carries the send time):\n\n\
         | target | conns | runs | rate/s | delivered/expected (all runs) | lost | dups | \
         p50 ms | p99 ms | p999 ms | max ms |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let lat: Vec<&Vec<&RunResult>> = gs.iter().filter(|g| g[0].scenario == "latency").collect();
    for g in &lat {
        let rate = med(g, |r| r.publish_per_sec);
        out.push_str(&format!(
            "| {} | {} | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} |\n",
            g[0].target,
            g[0].conns,
            g.len(),
            num(rate, 0),
            total(g, |r| r.delivered),
            total(g, |r| r.expected),
            total(g, |r| r.lost),
            total(g, |r| r.dups),
            ms(med_us(g, |r| r.lat_p50_us)),
            ms(med_us(g, |r| r.lat_p99_us)),
            ms(med_us(g, |r| r.lat_p999_us)),
            ms(med_us(g, |r| r.lat_max_us)),
        ));
    }
    if let [a, b] = lat.as_slice() {
        let d = |f: fn(&RunResult) -> Option<u64>| match (med_us(b, f), med_us(a, f)) {
            (Some(x), Some(y)) => format!("{:+.2}", (x as f64 - y as f64) / 1000.0),
            _ => "-".into(),
        };
        out.push_str(&format!(
            "| {} − {} (medians) | | | | | | | {} | {} | {} | {} |\n",
            b[0].target,
            a[0].target,
            d(|r| r.lat_p50_us),
            d(|r| r.lat_p99_us),
            d(|r| r.lat_p999_us),
            d(|r| r.lat_max_us),
        ));
    }

    out.push_str(
        "\nConnections per node (medians; RSS once every client connected):\n\n\
         | target | scenario | conns | runs | node | clients | server gauge | RSS MiB | \
         delivered/expected (all runs) | lost | dups |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for g in gs.iter().filter(|g| g[0].cluster.is_some()) {
        let nodes = g[0].cluster.as_ref().map_or(0, |c| c.nodes.len());
        for k in 0..nodes {
            let node = |r: &RunResult| r.cluster.as_ref().and_then(|c| c.nodes.get(k)).cloned();
            let (mut del, mut exp, mut dups) = (0, 0, 0);
            for r in g {
                if let Some(n) = node(r) {
                    del += n.delivered;
                    exp += n.expected;
                    dups += n.dups;
                }
            }
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} | {} |\n",
                g[0].target,
                g[0].scenario,
                g[0].conns,
                g.len(),
                k + 1,
                num(med(g, |r| node(r).map(|n| n.clients as f64)), 0),
                num(med(g, |r| node(r).and_then(|n| n.gauge)), 0),
                num(med(g, |r| node(r).map(|n| mib(n.rss_connected_kb))), 1),
                del,
                exp,
                exp.saturating_sub(del),
                dups,
            ));
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} | all | {} | | | {}/{} | {} | {} |\n",
            g[0].target,
            g[0].scenario,
            g[0].conns,
            g.len(),
            num(med(g, |r| Some(r.connected as f64)), 0),
            total(g, |r| r.delivered),
            total(g, |r| r.expected),
            total(g, |r| r.lost),
            total(g, |r| r.dups),
        ));
    }
    Ok(out)
}
