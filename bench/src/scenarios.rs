//! The coordinator: starts worker processes (workers.rs), publishes, samples the server's
//! /proc stats around each phase and turns worker results into a RunResult.

use std::cell::{Cell, RefCell};
use std::process::Stdio;
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::churn::{self, ChurnStats};
use crate::client::WorkerConfig;
use crate::client::{Ready, WorkerResult};
use crate::cluster;
use crate::conn as client;
use crate::grpc;
use crate::metrics::{self, Scrape};
use crate::payload;
use crate::proc_stats::{self, ProcSample};
use crate::recv::{new_histogram, now_ns};
use crate::report::{ChurnReport, RunResult, TimelinePoint, PERCENTILES};
use crate::target::Endpoint;

mod churn_run;
mod publishing;
mod recovery;
mod workers;

use churn_run::*;
use publishing::*;
use workers::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// N connections, M messages published as fast as accepted.
    Burst,
    /// Paced publishing; latency distribution.
    Latency,
    /// Connections only; server memory per connection.
    Idle,
    /// Latency plus clients that never read.
    Slow,
    /// Channel subscriptions (pushgate only).
    Channels,
    /// `latency` at scale: 10,000 connections × 100 publications/s.
    Sustained,
    /// Paced publishing to stable connections while others come and go;
    /// checks the server's connection gauge and memory come back.
    Churn,
    /// `burst` against several nodes joined through a broker: clients
    /// spread over `--ws A,B,C`, publications into the first node.
    Cluster,
    /// `burst` on one channel that every connection subscribes to: the same
    /// fan-out as `burst`, but channel publications (which history applies
    /// to; a publication to all has no offset).
    BurstChannel,
    /// Mass reconnect with `since` (history): see `scenarios/recovery.rs`.
    Recovery,
}

impl Scenario {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "burst" => Self::Burst,
            "latency" => Self::Latency,
            "idle" => Self::Idle,
            "slow" => Self::Slow,
            "channels" => Self::Channels,
            "sustained" => Self::Sustained,
            "churn" => Self::Churn,
            "cluster" => Self::Cluster,
            "burst-channel" => Self::BurstChannel,
            "recovery" => Self::Recovery,
            _ => bail!(
                "unknown scenario {s:?} (burst|latency|idle|slow|channels|sustained|churn|cluster|burst-channel|recovery)"
            ),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Burst => "burst",
            Self::Latency => "latency",
            Self::Idle => "idle",
            Self::Slow => "slow",
            Self::Channels => "channels",
            Self::Sustained => "sustained",
            Self::Churn => "churn",
            Self::Cluster => "cluster",
            Self::BurstChannel => "burst-channel",
            Self::Recovery => "recovery",
        }
    }

    /// Connections subscribe to channels and publications go to channels.
    pub fn subscribes(self) -> bool {
        matches!(self, Self::Channels | Self::BurstChannel)
    }

    /// Publishes one request at a time at `--rate` for `--duration`.
    pub fn paced(self) -> bool {
        matches!(
            self,
            Self::Latency | Self::Slow | Self::Sustained | Self::Churn
        )
    }
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub scenario: Scenario,
    pub target: String,
    /// The first (or only) WebSocket URL.
    pub ws: String,
    /// Every node's WebSocket URL (`--ws A,B,C`); clients are split evenly.
    pub ws_urls: Vec<String>,
    pub publish: String,
    /// The first node's pid.
    pub pid: Option<String>,
    /// Every node's pid (`--pid P1,P2,P3`), in `ws_urls` order.
    pub pids: Vec<String>,
    /// Every node's HTTP base URL, for its connection gauge (`--node-http`).
    pub node_http: Vec<String>,
    pub redis_pid: Option<String>,
    /// Burst publishing through one gRPC `PublishStream` to this node
    /// (`--grpc http://127.0.0.1:G`) instead of pipelined HTTP POSTs.
    pub grpc: Option<String>,
    pub conns: usize,
    pub messages: usize,
    pub size: usize,
    pub duration_s: f64,
    pub rate: f64,
    pub publishers: usize,
    /// Burst: requests in flight per publish connection (HTTP pipelining).
    pub pipeline: usize,
    /// Publish requests carry `Prefer: respond-async` (RFC 7240): a server that
    /// honors it answers 202 once a publication is accepted, without waiting for its
    /// fan-out; one that does not answers as it always does.
    pub respond_async: bool,
    pub per_worker: usize,
    pub min_workers: usize,
    pub settle_s: f64,
    pub quiet_ms: u64,
    pub deadline_s: u64,
    pub slow: usize,
    pub channels: usize,
    pub channels_per_conn: usize,
    pub handshake_concurrency: usize,
    pub connect_timeout_s: u64,
    /// Churn: connections opened (and closed) per second, and their mean
    /// lifetime.
    pub churn_rate: f64,
    pub churn_hold_ms: u64,
    /// Recovery: the history channel, publications every client receives
    /// live before disconnecting, publications made while they are away, and
    /// how many reconnect at the same time.
    pub history_channel: String,
    pub warmup: u64,
    pub missed: u64,
    pub reconnect_concurrency: usize,
    /// Workers offer permessage-deflate (`--deflate`).
    pub deflate: bool,
    /// The Pusher protocol (`--pusher ID:KEY:SECRET`, pusher.rs): clients
    /// subscribe to one public channel, publications go to the signed API.
    pub pusher: Option<crate::pusher::App>,
}

pub fn run(cfg: RunConfig) -> Result<RunResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run_async(cfg))
}

async fn run_async(cfg: RunConfig) -> Result<RunResult> {
    if cfg.scenario == Scenario::Recovery {
        return recovery::run(&cfg).await;
    }
    for ws in &cfg.ws_urls {
        if Endpoint::parse_client(ws)?.sse && cfg.scenario.subscribes() {
            bail!("SSE clients are measured in broadcast scenarios only");
        }
    }
    let pub_ep = Endpoint::parse(&cfg.publish, "http")?;
    let grpc_ep = match &cfg.grpc {
        Some(g) if !cfg.scenario.subscribes() => Some(Endpoint::parse(g, "http")?),
        Some(_) => bail!("--grpc publishes broadcasts; the channels scenario needs HTTP"),
        None => None,
    };
    if cfg.pusher.is_some() && (grpc_ep.is_some() || cfg.scenario.subscribes()) {
        bail!("--pusher: broadcast scenarios over HTTP only (one channel, the signed events API)");
    }
    let pid = cfg.pid.as_deref();
    if cfg.size < payload::MIN_SIZE {
        eprintln!(
            "note: --size {} below minimum; payloads will be {} B",
            cfg.size,
            payload::MIN_SIZE
        );
    }

    let messages = match cfg.scenario {
        Scenario::Idle => 0,
        s if s.paced() => (cfg.rate * cfg.duration_s).round() as usize,
        _ => cfg.messages,
    };

    // The latency floor, before any client connects (floor.rs).
    let floor = if cfg.scenario.paced() {
        Some(crate::floor::measure(
            cfg.conns,
            cfg.size.max(payload::MIN_SIZE),
        )?)
    } else {
        None
    };
    let before_connect = proc_stats::sample_opt(pid)?;
    let multi = cfg.ws_urls.len() > 1 || cfg.pids.len() > 1;
    let nodes_before_connect = cluster::sample(&cfg.pids, cfg.redis_pid.as_deref());
    let churning = cfg.scenario == Scenario::Churn;
    let scrape_before = if churning {
        scrape_opt(&pub_ep).await
    } else {
        None
    };

    // Slow consumers connect first so they are in place for every message.
    let mut slow_workers = if cfg.scenario == Scenario::Slow && cfg.slow > 0 {
        let mut w = cfg.spawn_workers(cfg.conns, cfg.slow, messages, true)?;
        cfg.wait_ready(&mut w).await?;
        w
    } else {
        Vec::new()
    };

    let mut workers = cfg.spawn_workers(0, cfg.conns, messages, false)?;
    let ready = cfg.wait_ready(&mut workers).await?;
    if ready.connected == 0 {
        bail!("no connection succeeded: {:?}", ready.errors);
    }
    if matches!(cfg.scenario, Scenario::Idle | Scenario::Cluster) {
        // Let the server finish per-connection setup (goroutines, buffers).
        tokio::time::sleep(Duration::from_secs_f64(cfg.settle_s)).await;
    }
    let node_gauges = if multi {
        cluster::gauges(&cfg.node_http).await
    } else {
        Vec::new()
    };
    let nodes_before_pub = cluster::sample(&cfg.pids, cfg.redis_pid.as_deref());
    let before_pub = proc_stats::sample_opt(pid)?;
    let churn = if churning {
        Some(ChurnRun::start(&cfg, &pub_ep, pid, messages, before_connect.rss_kb).await?)
    } else {
        None
    };

    let (paths, chans) = publish_paths(&cfg, &pub_ep, messages);
    let published = if messages > 0 {
        let rate = cfg.scenario.paced().then_some(cfg.rate);
        publish(
            &pub_ep,
            grpc_ep.as_ref(),
            &paths,
            cfg.size,
            cfg.publishers,
            cfg.pipeline,
            cfg.respond_async,
            rate,
            cfg.pusher.as_ref(),
        )
        .await
    } else {
        Published::default()
    };

    // Churn: wait for the last churn connection to leave and for the gauge
    // to settle, while the stable clients are still connected.
    let mut churn = match churn {
        Some(c) => Some(
            c.stop(&pub_ep, pid, ready.connected as f64, scrape_before)
                .await,
        ),
        None => None,
    };

    // What each worker should receive: every accepted publication on every
    // connection, or for channels on the connections subscribed to it.
    let mut results = Vec::with_capacity(workers.len());
    let mut expected_per_worker = Vec::with_capacity(workers.len());
    for w in workers.iter_mut() {
        let expected = expected_for(&cfg, w, &published, &chans);
        expected_per_worker.push(expected);
        w.finish(expected, cfg.quiet_ms, cfg.deadline_s * 1000)
            .await?;
    }
    let result_timeout = Duration::from_secs(cfg.deadline_s + 30);
    for w in workers.iter_mut() {
        results.push(w.read_msg::<WorkerResult>("result", result_timeout).await?);
    }
    let after = proc_stats::sample_opt(pid)?;
    let nodes_after = cluster::sample(&cfg.pids, cfg.redis_pid.as_deref());
    let tallies: Vec<cluster::WorkerTally> = workers
        .iter()
        .zip(&results)
        .zip(&expected_per_worker)
        .map(|((w, res), &expected)| cluster::WorkerTally {
            node: w.node,
            clients: w.connected,
            expected,
            delivered: res.delivered,
            dups: res.dups,
        })
        .collect();

    let mut slow_results = Vec::new();
    for w in slow_workers.iter_mut() {
        // Drain what the server queued for the slow clients, or see that it
        // closed them: until 3.5 s pass without data (longer than pushgate's
        // default 3 s close timeout), at most 10 s.
        w.finish(u64::MAX, 3500, 10_000).await?;
        slow_results.push(w.read_msg::<WorkerResult>("result", result_timeout).await?);
    }
    for w in workers.into_iter().chain(slow_workers) {
        w.reap().await;
    }
    if let Some((c, before)) = churn.as_mut() {
        // Every stable client is gone (the workers exited): the gauge must
        // be back where it was before they connected.
        after_close(c, before.as_ref(), &pub_ep, pid).await;
    }

    let mut r = build_result(
        &cfg,
        &ready,
        &published,
        &results,
        &slow_results,
        before_connect,
        before_pub,
        after,
    );
    r.churn = churn.map(|(c, _)| c);
    if let Some((us, scaled)) = floor {
        r.floor_us = Some(us);
        r.floor_scaled = scaled;
    }
    if multi {
        let c = cluster::build(
            &cfg.ws_urls,
            &cfg.pids,
            &node_gauges,
            &tallies,
            &nodes_before_connect,
            &nodes_before_pub,
            &nodes_after,
            &r,
        );
        // Server CPU of the whole cluster (every node and Redis), not only
        // the node published to.
        r.server_cpu_ms = Some(c.server_cpu_ms_total);
        if r.delivered > 0 {
            r.cpu_us_per_delivery = Some(c.server_cpu_ms_total * 1000.0 / r.delivered as f64);
        }
        r.cluster = Some(c);
    }
    Ok(r)
}

/// Scrape pushgate's /metrics; None for servers without it (or on error).
async fn scrape_opt(ep: &Endpoint) -> Option<Scrape> {
    metrics::scrape(ep).await.ok().flatten()
}

fn expected_for(cfg: &RunConfig, w: &WorkerHandle, p: &Published, chans: &[usize]) -> u64 {
    if cfg.scenario.subscribes() {
        let mut subs = vec![0u64; cfg.channels];
        for i in w.first_index..w.first_index + w.conns {
            for c in client::channels_for(i, cfg.channels, cfg.channels_per_conn) {
                subs[c] += 1;
            }
        }
        return chans
            .iter()
            .zip(&p.accepted)
            .filter(|(_, a)| **a)
            .map(|(c, _)| subs[*c])
            .sum();
    }
    w.connected * p.count()
}

#[allow(clippy::too_many_arguments)]
fn build_result(
    cfg: &RunConfig,
    ready: &Ready,
    p: &Published,
    results: &[WorkerResult],
    slow: &[WorkerResult],
    before_connect: ProcSample,
    before_pub: ProcSample,
    after: ProcSample,
) -> RunResult {
    let mut hist = new_histogram();
    let n = p.accepted.len();
    let mut seq_count = vec![0u64; n];
    let mut seq_max = vec![0u64; n];
    let mut r = RunResult {
        target: cfg.target.clone(),
        scenario: cfg.scenario.name().into(),
        timestamp_ns: now_ns(),
        conns: cfg.conns as u64,
        connected: ready.connected,
        handshake_failed: ready.failed,
        size: cfg.size.max(payload::MIN_SIZE) as u64,
        published: p.count(),
        publish_rejected: p.rejected,
        publish_errors: p.errors,
        ..Default::default()
    };
    let mut last_recv = 0;
    for w in results {
        r.delivered += w.delivered;
        r.dups += w.dups;
        r.foreign_frames += w.foreign;
        r.bad_seq += w.bad_seq;
        r.pings += w.pings;
        r.server_closes += w.server_closes;
        r.server_eofs += w.eofs;
        r.open_at_end += w.open;
        r.client_cpu_ms += w.cpu_ns as f64 / 1e6;
        r.client_reads += w.reads;
        r.wire_bytes += w.wire_bytes;
        last_recv = last_recv.max(w.last_recv_ns);
        for &(v, c) in &w.hist {
            let _ = hist.record_n(v, c);
        }
        for (i, (&c, &m)) in w
            .seq_count
            .iter()
            .zip(&w.seq_max_lat_ns)
            .enumerate()
            .take(n)
        {
            seq_count[i] += c as u64;
            seq_max[i] = seq_max[i].max(m);
        }
    }
    let worker_ns: u64 = results.iter().map(|w| w.cpu_ns).sum();
    if r.delivered > 0 {
        let ns = worker_ns.saturating_sub(ready.cpu_ns);
        r.client_cpu_us_per_delivery = Some(ns as f64 / 1000.0 / r.delivered as f64);
    }
    r.coordinator_cpu_ms = proc_stats::self_cpu_ns() as f64 / 1e6;
    r.client_cpu_ms += r.coordinator_cpu_ms;
    if ready.connected > 0 {
        r.client_rss_per_conn_bytes =
            Some(ready.rss_growth_kb as f64 * 1024.0 / ready.connected as f64);
    }
    let mut errors: Vec<String> = ready.errors.clone();
    errors.extend(results.iter().flat_map(|w| w.errors.iter().cloned()));
    errors.extend(p.first_error.clone());
    errors.dedup();
    errors.truncate(10);
    r.errors = errors;

    r.expected = match cfg.scenario {
        Scenario::Channels | Scenario::BurstChannel => {
            let mut subs = vec![0u64; cfg.channels];
            for i in 0..cfg.conns {
                for c in client::channels_for(i, cfg.channels, cfg.channels_per_conn) {
                    subs[c] += 1;
                }
            }
            let (_, chans) = publish_paths(
                cfg,
                &Endpoint::parse(&cfg.publish, "http").expect("parsed before"),
                n,
            );
            chans
                .iter()
                .zip(&p.accepted)
                .filter(|(_, a)| **a)
                .map(|(c, _)| subs[*c])
                .sum()
        }
        _ => r.connected * r.published,
    };
    r.lost = r.expected.saturating_sub(r.delivered);

    if r.delivered > 0 && last_recv > p.first_ns {
        let secs = (last_recv - p.first_ns) as f64 / 1e9;
        r.elapsed_s = Some(secs);
        r.deliveries_per_sec = Some(r.delivered as f64 / secs);
        let pub_secs = (p.last_ns - p.first_ns) as f64 / 1e9;
        r.publish_per_sec = Some(r.published as f64 / pub_secs.max(1e-9));
        let cpu_ms = after.cpu_ms_since(&before_pub);
        r.server_cpu_ms = Some(cpu_ms);
        r.cpu_us_per_delivery = Some(cpu_ms * 1000.0 / r.delivered as f64);
        r.lat_p50_us = Some(hist.value_at_quantile(0.50));
        r.lat_p99_us = Some(hist.value_at_quantile(0.99));
        r.lat_p999_us = Some(hist.value_at_quantile(0.999));
        r.lat_max_us = Some(hist.max());
        r.lat_percentiles = PERCENTILES
            .iter()
            .map(|&p| {
                let v = if p <= 0.0 {
                    hist.min()
                } else if p >= 100.0 {
                    hist.max()
                } else {
                    hist.value_at_quantile(p / 100.0)
                };
                (p, v)
            })
            .collect();
        let mut last: Vec<u64> = seq_max
            .iter()
            .zip(&seq_count)
            .filter(|(_, c)| **c > 0)
            .map(|(m, _)| *m / 1000)
            .collect();
        last.sort_unstable();
        r.last_p50_us = percentile(&last, 0.50);
        r.last_p99_us = percentile(&last, 0.99);
    }

    r.rss_before_kb = Some(before_connect.rss_kb);
    r.rss_connected_kb = Some(before_pub.rss_kb);
    r.rss_after_kb = Some(after.rss_kb);
    if cfg.scenario == Scenario::Idle && r.connected > 0 {
        let delta_kb = before_pub.rss_kb.saturating_sub(before_connect.rss_kb);
        r.rss_per_conn_bytes = Some(delta_kb as f64 * 1024.0 / r.connected as f64);
        r.connect_cpu_ms = Some(before_pub.cpu_ms_since(&before_connect));
    }
    if !slow.is_empty() {
        r.slow_conns = Some(slow.iter().map(|w| w.connected).sum());
        r.slow_closed_by_server = Some(slow.iter().map(|w| w.server_closes).sum());
        r.slow_open_at_end = Some(slow.iter().map(|w| w.open).sum());
        r.slow_eofs = Some(slow.iter().map(|w| w.eofs).sum());
        r.slow_delivered = Some(slow.iter().map(|w| w.delivered).sum());
    }
    r
}

fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
