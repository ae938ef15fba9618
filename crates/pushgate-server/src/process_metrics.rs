//! Process metrics (CPU time, memory, descriptors, threads, start time), read by the
//! `metrics-process` crate at scrape time and named `pushgate_process_*`.
//!
//! `pushgate_process_cpu_seconds_total` is a counter, as Prometheus expects of a
//! `_total`; the crate records it in whole seconds (the `metrics` facade's counters are
//! integers), which `rate()` over a minute or more smooths out.

use std::sync::OnceLock;

use metrics_process::Collector;

fn collector() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| Collector::new("pushgate_"))
}

/// The `# HELP` lines of the process metrics.
pub fn describe() {
    collector().describe();
}

/// Reads the process's current figures into the recorder.
pub fn collect() {
    collector().collect();
}
