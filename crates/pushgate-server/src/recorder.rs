//! The process's metrics recorder: the Prometheus exporter for counters and gauges,
//! [`Buckets`] for every histogram.
//!
//! Intercepting `register_histogram` keeps every `histogram!` call site as it is (names,
//! labels, handles resolved once per shard) while no histogram sample is ever stored:
//! the exporter's histograms buffer each sample until a scrape or an upkeep (issue 19).
//! A scrape renders the exporter's text and appends [`Histograms::render_into`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_exporter_prometheus::formatting::{
    sanitize_label_key, sanitize_label_value, sanitize_metric_name, write_help_line,
};
use metrics_exporter_prometheus::PrometheusRecorder;

use crate::histogram::Buckets;

/// Bucket bounds per histogram name; a name not listed gets [`DEFAULT_BUCKETS`].
pub type BucketTable = &'static [(&'static str, &'static [f64])];

/// The Prometheus client libraries' default buckets (seconds).
const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every histogram series of the process, by key, and the descriptions given for them.
pub struct Histograms {
    table: BucketTable,
    series: RwLock<HashMap<Key, Arc<Series>>>,
    help: Mutex<HashMap<String, SharedString>>,
}

struct Series {
    name: String,
    /// `k="v",...`, sanitized and escaped as the exporter does.
    labels: String,
    buckets: Arc<Buckets>,
}

impl Histograms {
    pub fn new(table: BucketTable) -> Histograms {
        Histograms {
            table,
            series: RwLock::new(HashMap::new()),
            help: Mutex::new(HashMap::new()),
        }
    }

    /// The series for `key`, created on first use. The same key always gets the same
    /// counts (several gateways in one test process share them, as with the exporter).
    pub fn get(&self, key: &Key) -> Arc<Buckets> {
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return s.buckets.clone();
        }
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        series
            .entry(key.clone())
            .or_insert_with(|| {
                let bounds = self
                    .table
                    .iter()
                    .find(|(n, _)| *n == key.name())
                    .map_or(DEFAULT_BUCKETS, |(_, b)| *b);
                let labels: Vec<String> = key
                    .labels()
                    .map(|l| {
                        format!(
                            "{}=\"{}\"",
                            sanitize_label_key(l.key()),
                            sanitize_label_value(l.value())
                        )
                    })
                    .collect();
                Arc::new(Series {
                    name: sanitize_metric_name(key.name()),
                    labels: labels.join(","),
                    buckets: Arc::new(Buckets::new(bounds)),
                })
            })
            .buckets
            .clone()
    }

    /// Appends every histogram family in the text format, in name then label order,
    /// each followed by a blank line as the exporter does.
    pub fn render_into(&self, out: &mut String) {
        let mut all: Vec<Arc<Series>> = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        let help = self.help.lock().unwrap_or_else(PoisonError::into_inner);
        for (i, s) in all.iter().enumerate() {
            if i == 0 || all[i - 1].name != s.name {
                if i > 0 {
                    out.push('\n');
                }
                if let Some(desc) = help.get(&s.name) {
                    write_help_line(out, &s.name, None, None, desc);
                }
                out.push_str("# TYPE ");
                out.push_str(&s.name);
                out.push_str(" histogram\n");
            }
            s.buckets.write_series(out, &s.name, &s.labels);
        }
        if !all.is_empty() {
            out.push('\n');
        }
    }
}

/// The recorder installed for the process.
pub struct Recorder {
    pub prometheus: PrometheusRecorder,
    pub histograms: Arc<Histograms>,
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.histograms
            .help
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sanitize_metric_name(key.as_str()), description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.prometheus.register_counter(key, metadata)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.prometheus.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.histograms.get(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::Recorder as _;

    const TABLE: BucketTable = &[("frames", &[1.0, 2.0])];

    fn recorder() -> Recorder {
        Recorder {
            prometheus: metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder(),
            histograms: Arc::new(Histograms::new(TABLE)),
        }
    }

    fn meta() -> Metadata<'static> {
        Metadata::new("test", metrics::Level::INFO, None)
    }

    #[test]
    fn histograms_bypass_the_exporter_and_render_grouped() {
        let r = recorder();
        let key = |shard: &'static str| {
            Key::from_parts("frames", vec![metrics::Label::new("shard", shard)])
        };
        r.register_histogram(&key("1"), &meta()).record(2.0);
        r.register_histogram(&key("0"), &meta()).record(1.0);
        // Same key, same counts.
        r.register_histogram(&key("0"), &meta()).record(3.0);
        r.register_histogram(&Key::from_static_name("lat\"ency"), &meta())
            .record(0.2);
        r.describe_histogram("frames".into(), None, "Frames per write.".into());

        assert!(!r.prometheus.handle().render().contains("frames"));
        let mut out = String::new();
        r.histograms.render_into(&mut out);
        assert_eq!(
            out,
            "# HELP frames Frames per write.\n\
             # TYPE frames histogram\n\
             frames_bucket{shard=\"0\",le=\"1\"} 1\n\
             frames_bucket{shard=\"0\",le=\"2\"} 1\n\
             frames_bucket{shard=\"0\",le=\"+Inf\"} 2\n\
             frames_sum{shard=\"0\"} 4\n\
             frames_count{shard=\"0\"} 2\n\
             frames_bucket{shard=\"1\",le=\"1\"} 0\n\
             frames_bucket{shard=\"1\",le=\"2\"} 1\n\
             frames_bucket{shard=\"1\",le=\"+Inf\"} 1\n\
             frames_sum{shard=\"1\"} 2\n\
             frames_count{shard=\"1\"} 1\n\
             \n\
             # TYPE lat_ency histogram\n\
             lat_ency_bucket{le=\"0.005\"} 0\n\
             lat_ency_bucket{le=\"0.01\"} 0\n\
             lat_ency_bucket{le=\"0.025\"} 0\n\
             lat_ency_bucket{le=\"0.05\"} 0\n\
             lat_ency_bucket{le=\"0.1\"} 0\n\
             lat_ency_bucket{le=\"0.25\"} 1\n\
             lat_ency_bucket{le=\"0.5\"} 1\n\
             lat_ency_bucket{le=\"1\"} 1\n\
             lat_ency_bucket{le=\"2.5\"} 1\n\
             lat_ency_bucket{le=\"5\"} 1\n\
             lat_ency_bucket{le=\"10\"} 1\n\
             lat_ency_bucket{le=\"+Inf\"} 1\n\
             lat_ency_sum 0.2\n\
             lat_ency_count 1\n\
             \n"
        );
    }

    #[test]
    fn counters_and_gauges_stay_with_the_exporter() {
        let r = recorder();
        r.register_counter(&Key::from_static_name("c_total"), &meta())
            .increment(3);
        r.register_gauge(&Key::from_static_name("g"), &meta())
            .set(1.5);
        let text = r.prometheus.handle().render();
        assert!(text.contains("c_total 3\n"), "{text}");
        assert!(text.contains("g 1.5\n"), "{text}");
    }
}
