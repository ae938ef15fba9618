//! The Prometheus recorder, installed once per process, and process metrics
//! (process_metrics.rs) read at scrape time.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder (first call only) and returns its handle.
/// Must run before any metric handle is resolved, or those handles record nothing.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("pushgate_fanout_duration_seconds".into()),
                &[
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 1.0,
                ],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("pushgate_write_batch_frames".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("pushgate_grpc_request_duration_seconds".into()),
                    &[
                        0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
                    ],
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("pushgate_http_request_duration_seconds".into()),
                    &[
                        0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
                    ],
                )
            })
            .expect("bucket lists are non-empty")
            .build_recorder();
        let handle = recorder.handle();
        // In tests several gateways share one process: the first recorder stays.
        let _ = metrics::set_global_recorder(recorder);
        crate::metric_help::describe();
        metrics::gauge!("pushgate_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// Renders the exposition, refreshing process metrics first.
pub fn render() -> String {
    let handle = install();
    record_process();
    handle.run_upkeep();
    handle.render()
}

fn record_process() {
    crate::process_metrics::collect();
}
