//! A node serving steady traffic while nobody scrapes `/metrics` keeps a bounded
//! memory (issue 19). The exporter used to keep every histogram sample until the next
//! scrape, one per vectored write: at least 16 bytes per delivery in this test's
//! regime (one frame per write), so a million deliveries grew the node by 16 MB or more.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use support::{http, Served, PORT_0};

const BIN: &str = env!("CARGO_BIN_EXE_pushgate");
const CLIENTS: u64 = 200;
/// Publications before the first RSS reading: buffers and queues reach their size.
const WARMUP: u64 = 500;
/// Publications between the two readings: CLIENTS × MEASURED = 1,000,000 deliveries.
const MEASURED: u64 = 5_000;
/// Allowed growth over the measured deliveries. The old exporter needed 16+ MB
/// (a `(f64, Instant)` per write); what remains is allocator noise.
const MAX_GROWTH_KB: u64 = 6 * 1024;
/// Guard against a hang (debug builds are slow); not a timing assertion.
const DEADLINE: Duration = Duration::from_secs(180);

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Publishes `n` broadcasts one after another: each answer means every shard has
/// enqueued it, so the writers send one frame per write, as in a steady regime.
fn publish_sequentially(http_addr: SocketAddr, n: u64) {
    for i in 0..n {
        let (status, body) = http(http_addr, "POST", "/publish?all=true", b"tick")
            .unwrap_or_else(|| panic!("publication {i} got no answer"));
        assert_eq!(status, 200, "{body}");
    }
}

/// Waits until the clients together have received `want` publications.
async fn wait_delivered(received: &AtomicU64, want: u64) {
    let deadline = Instant::now() + DEADLINE;
    while received.load(Ordering::Relaxed) < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} deliveries arrived",
            received.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sum of `pushgate_write_batch_frames_sum` over shards: frames written to clients.
fn frames_written(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("pushgate_write_batch_frames_sum"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_without_a_scrape() {
    // No heartbeat pings during the test: every frame a client gets is a publication.
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .args(PORT_0)
        .args(["--shards", "2"])
        .args(["--set", "pin_shards=false"])
        .args(["--set", "heartbeat_interval_ms=3600000"])
        .args(["--set", "heartbeat_timeout_ms=7200000"]);
    let node = Served::start(cmd);
    let (ws, http_addr, pid) = (node.ws, node.http, node.child.0.id());

    let received = Arc::new(AtomicU64::new(0));
    for _ in 0..CLIENTS {
        let (mut c, _) = tokio_tungstenite::connect_async(format!("ws://{ws}/ws"))
            .await
            .unwrap();
        let hello = c.next().await.unwrap().unwrap();
        assert!(hello.into_text().unwrap().contains("connected"));
        let received = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = c.next().await {
                if matches!(m, Message::Text(_)) {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }

    tokio::task::spawn_blocking(move || publish_sequentially(http_addr, WARMUP))
        .await
        .unwrap();
    wait_delivered(&received, CLIENTS * WARMUP).await;
    let before = rss_kb(pid);

    tokio::task::spawn_blocking(move || publish_sequentially(http_addr, MEASURED))
        .await
        .unwrap();
    wait_delivered(&received, CLIENTS * (WARMUP + MEASURED)).await;
    let after = rss_kb(pid);

    let growth = after.saturating_sub(before);
    let deliveries = CLIENTS * MEASURED;
    eprintln!("RSS {before} kB -> {after} kB over {deliveries} deliveries, no scrape");
    assert!(
        growth <= MAX_GROWTH_KB,
        "RSS grew by {growth} kB ({before} -> {after}) over {deliveries} deliveries \
         with no scrape: {:.1} bytes per delivery",
        growth as f64 * 1024.0 / deliveries as f64
    );

    // The first scrape, afterwards: the distribution was kept (as counts), not dropped.
    let (status, metrics) = http(http_addr, "GET", "/metrics", b"").unwrap();
    assert_eq!(status, 200);
    let frames = frames_written(&metrics);
    assert!(
        frames >= (CLIENTS * (WARMUP + MEASURED)) as f64,
        "write_batch_frames_sum = {frames}, expected every delivery counted"
    );
}
