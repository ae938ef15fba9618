//! The worker process: holds WebSocket client connections and records what
//! they receive.
//!
//! One single-threaded tokio runtime per worker process and one small task
//! per connection (`conn`), all sharing one read buffer and one set of
//! counters (`recv`) through `Rc` (no atomics, no locks). A coordinator
//! (`run`) drives workers over stdin/stdout with JSON lines, so connection
//! counts can exceed one process's open-files limit.
//!
//! Protocol (stdout, one JSON object per line):
//!   → `{"type":"ready",...}` once every connection finished its handshake
//!   ← stdin `finish EXPECTED QUIET_MS DEADLINE_MS`
//!   → `{"type":"result",...}` once EXPECTED deliveries arrived, or nothing
//!     arrived for QUIET_MS, or DEADLINE_MS passed; then the process exits.

use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;

use crate::conn;
use crate::proc_stats;
use crate::recv::{now_ns, Shared};
use crate::target::Endpoint;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub ws: Endpoint,
    pub conns: usize,
    /// Global index of this worker's first connection: picks source
    /// addresses and channel subscriptions consistently across workers.
    pub first_index: usize,
    /// Sequence numbers are expected in `0..max_seq`.
    pub max_seq: usize,
    /// Payload size (lets the receiver skip padding); 0 = unknown.
    pub size: usize,
    /// Connect, handshake, then never read (slow-consumer scenario).
    pub no_read: bool,
    /// Offer permessage-deflate and inflate compressed messages (`--deflate`).
    pub deflate: bool,
    /// Speak the Pusher protocol: subscribe to `pusher::CHANNEL` after the handshake.
    pub pusher: bool,
    /// Subscribe each connection to `per_conn` of `total` channels.
    pub channels: Option<(usize, usize)>,
    pub handshake_concurrency: usize,
    pub connect_timeout: Duration,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ready {
    pub connected: u64,
    pub failed: u64,
    /// Worker CPU spent so far (connecting), so the delivery phase's cost
    /// can be separated from handshakes.
    pub cpu_ns: u64,
    /// Worker memory growth from start to all connected (KiB).
    pub rss_growth_kb: u64,
    pub errors: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    pub connected: u64,
    pub failed: u64,
    /// Connections still open when the result was taken.
    pub open: u64,
    /// Unique (connection, seq) deliveries.
    pub delivered: u64,
    pub dups: u64,
    /// Messages without the bench marker (e.g. pushgate's "connected" frame).
    pub foreign: u64,
    /// Marker found but seq outside `0..max_seq`.
    pub bad_seq: u64,
    pub pings: u64,
    pub server_closes: u64,
    /// TCP closed by the server without a CLOSE frame.
    pub eofs: u64,
    /// Successful socket reads (deliveries / reads = frames per syscall).
    pub reads: u64,
    /// Bytes of complete frames received (the wire, headers included).
    #[serde(default)]
    pub wire_bytes: u64,
    pub first_recv_ns: u64,
    pub last_recv_ns: u64,
    /// Latency histogram (µs) as (value, count) pairs.
    pub hist: Vec<(u64, u64)>,
    /// Per seq: unique deliveries.
    pub seq_count: Vec<u32>,
    /// Per seq: latency of the last recipient (ns).
    pub seq_max_lat_ns: Vec<u64>,
    pub cpu_ns: u64,
    pub errors: Vec<String>,
}

pub fn run_worker(cfg: WorkerConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, worker_main(cfg))
}

async fn worker_main(cfg: WorkerConfig) -> Result<()> {
    let rss_start = self_rss_kb();
    let cfg = Rc::new(cfg);
    let sh = Rc::new(Shared::new(cfg.max_seq, cfg.size).sse(cfg.ws.sse));
    let sem = Rc::new(Semaphore::new(cfg.handshake_concurrency.max(1)));
    for i in 0..cfg.conns {
        tokio::task::spawn_local(conn::conn_task(
            cfg.first_index + i,
            cfg.clone(),
            sh.clone(),
            sem.clone(),
        ));
    }

    // Every connection either succeeds or fails within its timeout; the
    // outer bound only guards against a bug here.
    let all_done = cfg.connect_timeout * (cfg.conns as u32 / cfg.handshake_concurrency as u32 + 2);
    let start = tokio::time::Instant::now();
    loop {
        {
            let s = sh.stats.borrow();
            if (s.connected + s.failed) as usize >= cfg.conns {
                break;
            }
        }
        if start.elapsed() > all_done {
            sh.stats
                .borrow_mut()
                .error("handshake phase timed out".into());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready = {
        let s = sh.stats.borrow();
        Ready {
            connected: s.connected,
            failed: s.failed + (cfg.conns as u64 - s.connected - s.failed),
            cpu_ns: proc_stats::self_cpu_ns(),
            rss_growth_kb: self_rss_kb().saturating_sub(rss_start),
            errors: s.errors.clone(),
        }
    };
    emit(&serde_json::to_string(&ready)?, "ready").await?;

    let (expected, quiet_ms, deadline_ms) = read_finish().await?;
    let finish_ns = now_ns();
    // Slow consumers start reading now (no-op for the others).
    sh.drain.notify_waiters();
    loop {
        let now = now_ns();
        {
            let s = sh.stats.borrow();
            let quiet_since = s.last_recv_ns.max(finish_ns);
            if s.delivered >= expected
                || now.saturating_sub(quiet_since) >= quiet_ms * 1_000_000
                || now.saturating_sub(finish_ns) >= deadline_ms * 1_000_000
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Build the result in a scope of its own: the borrow must end before
    // the await below lets connection tasks run (they borrow mutably).
    let result = {
        let s = sh.stats.borrow();
        WorkerResult {
            connected: s.connected,
            failed: s.failed,
            open: s.open,
            delivered: s.delivered,
            dups: s.dups,
            foreign: s.foreign,
            bad_seq: s.bad_seq,
            pings: s.pings,
            server_closes: s.server_closes,
            eofs: s.eofs,
            reads: s.reads,
            wire_bytes: s.wire_bytes,
            first_recv_ns: s.first_recv_ns,
            last_recv_ns: s.last_recv_ns,
            hist: s
                .hist
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
            seq_count: s.seq_count.clone(),
            seq_max_lat_ns: s.seq_max_lat_ns.clone(),
            cpu_ns: proc_stats::self_cpu_ns(),
            errors: s.errors.clone(),
        }
    };
    emit(&serde_json::to_string(&result)?, "result").await?;
    // Exiting closes every socket at once; no per-connection teardown needed.
    std::process::exit(0);
}

/// Wait for the coordinator's `finish EXPECTED QUIET_MS DEADLINE_MS`
/// (bounded: a coordinator that vanished closes our stdin, which ends the
/// wait too).
async fn read_finish() -> Result<(u64, u64, u64)> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let line = tokio::time::timeout(Duration::from_secs(3600), lines.next_line())
        .await
        .context("no finish command within an hour")??
        .unwrap_or_default();
    let mut it = line.split_whitespace();
    if it.next() != Some("finish") {
        bail!("expected 'finish' on stdin, got {line:?}");
    }
    let mut num = || -> Result<u64> { Ok(it.next().context("finish: missing field")?.parse()?) };
    Ok((num()?, num()?, num()?))
}

fn self_rss_kb() -> u64 {
    proc_stats::sample("self").map_or(0, |s| s.rss_kb)
}

/// Write one tagged JSON line (`{"type":T,...}`) to stdout.
async fn emit(json: &str, ty: &str) -> Result<()> {
    let line = format!("{{\"type\":\"{ty}\",{}\n", &json[1..]);
    let mut out = tokio::io::stdout();
    out.write_all(line.as_bytes()).await?;
    out.flush().await?;
    Ok(())
}
