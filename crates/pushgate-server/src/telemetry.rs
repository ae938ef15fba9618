//! The metrics recorder, installed once per process, its upkeep, every metric's
//! `# HELP` (metric_help.rs), and process metrics (process_metrics.rs) read at scrape time.
//!
//! Counters and gauges live in the Prometheus exporter; histograms in [`Buckets`]
//! (fixed buckets, counts in memory, see `histogram.rs`), appended to the exporter's
//! text at each scrape. Nothing kept here grows with traffic, scraped or not.
//!
//! [`Buckets`]: crate::histogram::Buckets

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::recorder::{BucketTable, Histograms, Recorder};

/// How often the exporter's upkeep runs, whether or not anyone scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Bucket bounds of every histogram (their names and meanings: docs/metrics.md).
const BUCKETS: BucketTable = &[
    (
        "pushgate_fanout_duration_seconds",
        &[
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            0.25, 1.0,
        ],
    ),
    (
        "pushgate_write_batch_frames",
        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
    ),
    (
        "pushgate_grpc_request_duration_seconds",
        &[
            0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
        ],
    ),
    (
        "pushgate_http_request_duration_seconds",
        &[
            0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
        ],
    ),
];

/// What a scrape reads.
pub struct Telemetry {
    prometheus: PrometheusHandle,
    histograms: Arc<Histograms>,
}

static INSTALLED: OnceLock<Telemetry> = OnceLock::new();

/// Installs the global recorder (first call only) and returns what renders it.
/// Must run before any metric handle is resolved, or those handles record nothing.
pub fn install() -> &'static Telemetry {
    INSTALLED.get_or_init(|| {
        let recorder = Recorder {
            prometheus: PrometheusBuilder::new().build_recorder(),
            histograms: Arc::new(Histograms::new(BUCKETS)),
        };
        let telemetry = Telemetry {
            prometheus: recorder.prometheus.handle(),
            histograms: recorder.histograms.clone(),
        };
        // In tests several gateways share one process: the first recorder stays.
        let _ = metrics::set_global_recorder(recorder);
        crate::metric_help::describe();
        metrics::gauge!("pushgate_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        telemetry
    })
}

/// Renders the exposition, refreshing process metrics first.
pub fn render() -> String {
    let t = install();
    record_process();
    let mut out = t.prometheus.render();
    t.histograms.render_into(&mut out);
    out
}

/// Runs the exporter's upkeep every [`UPKEEP_INTERVAL`] until `stop`: whatever the
/// exporter buffers between renders (descriptions today; histogram samples if a
/// histogram ever reached it) is then bounded by time, not by the scrape interval.
pub async fn upkeep(stop: CancellationToken) {
    let handle = &install().prometheus;
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => handle.run_upkeep(),
        }
    }
}

fn record_process() {
    crate::process_metrics::collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn upkeep_runs_until_stopped() {
        let stop = CancellationToken::new();
        let task = tokio::spawn(upkeep(stop.clone()));
        tokio::time::sleep(UPKEEP_INTERVAL * 3).await;
        assert!(!task.is_finished());
        stop.cancel();
        tokio::time::timeout(UPKEEP_INTERVAL, task)
            .await
            .expect("upkeep stops when told")
            .unwrap();
    }
}
