//! A histogram kept as counts per fixed bucket, for distributions recorded on the hot
//! path (one sample per batch of frames a writer takes, one per publication).
//!
//! The exporter's own histograms keep every sample, with a timestamp, until they are
//! folded into buckets (issue 19: memory grew with traffic while nobody scraped). Here
//! memory is fixed when the histogram is created, and a sample costs two relaxed atomic
//! increments (its bucket and the sum) in the recording thread's stripe: each thread
//! records into stripe `thread index % STRIPES`, so shard threads recording into one
//! histogram (`pushgate_fanout_duration_seconds`, finished by whichever shard is last)
//! do not share a cache line, and a per-shard histogram is written by its shard's thread
//! only. A scrape adds the stripes up; its cost depends on the buckets, not on traffic.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Stripes per histogram. More threads than this share stripes (still exact: every
/// update is an atomic read-modify-write), they only contend.
const STRIPES: usize = 16;
/// Counters per 128-byte line (two cache lines: the adjacent-line prefetcher pairs them).
const WORDS: usize = 16;

#[repr(align(128))]
struct Line([AtomicU64; WORDS]);

/// Counts per bucket and the sum of the samples, striped by thread.
pub struct Buckets {
    /// Upper bounds, ascending; a sample above the last goes to the implicit `+Inf`.
    bounds: &'static [f64],
    /// Lines per stripe: `bounds.len() + 2` counters (buckets, `+Inf`, sum bits).
    stride: usize,
    lines: Box<[Line]>,
}

/// What a scrape reads: counts per bucket (not cumulative, `+Inf` last) and the sum.
#[derive(Debug, PartialEq)]
pub struct Totals {
    pub counts: Vec<u64>,
    pub sum: f64,
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: usize = NEXT_THREAD.fetch_add(1, Relaxed) % STRIPES;
}

impl Buckets {
    /// `bounds` must be ascending and finite (checked in debug builds).
    pub fn new(bounds: &'static [f64]) -> Buckets {
        debug_assert!(
            bounds.windows(2).all(|w| w[0] < w[1]) && bounds.iter().all(|b| b.is_finite())
        );
        let stride = (bounds.len() + 2).div_ceil(WORDS);
        let lines = (0..stride * STRIPES)
            .map(|_| Line(std::array::from_fn(|_| AtomicU64::new(0))))
            .collect();
        Buckets {
            bounds,
            stride,
            lines,
        }
    }

    fn word(&self, stripe: usize, i: usize) -> &AtomicU64 {
        &self.lines[stripe * self.stride + i / WORDS].0[i % WORDS]
    }

    /// Counts `n` samples of `value`. NaN counts in `+Inf`.
    pub fn record_n(&self, value: f64, n: u64) {
        let bucket = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        let stripe = STRIPE.with(|s| *s);
        self.word(stripe, bucket).fetch_add(n, Relaxed);
        // One writer per stripe in the common case: the first exchange succeeds.
        let _ = self
            .word(stripe, self.bounds.len() + 1)
            .fetch_update(Relaxed, Relaxed, |bits| {
                Some((f64::from_bits(bits) + value * n as f64).to_bits())
            });
    }

    /// Adds the stripes up. Samples recorded meanwhile may be in the counts and not yet
    /// in the sum (or the reverse): Prometheus tolerates that skew of one scrape.
    pub fn totals(&self) -> Totals {
        let n = self.bounds.len() + 1;
        let mut counts = vec![0u64; n];
        let mut sum = 0.0;
        for stripe in 0..STRIPES {
            for (i, c) in counts.iter_mut().enumerate() {
                *c += self.word(stripe, i).load(Relaxed);
            }
            sum += f64::from_bits(self.word(stripe, n).load(Relaxed));
        }
        Totals { counts, sum }
    }

    /// Appends the series' `_bucket`, `_sum` and `_count` lines in the Prometheus text
    /// format, as the exporter writes them (`le` and the sum printed by `f64`'s
    /// `Display`). `labels` is empty or `k="v",...` without braces.
    pub fn write_series(&self, out: &mut String, name: &str, labels: &str) {
        let Totals { counts, sum } = self.totals();
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, c) in counts.iter().enumerate() {
            cumulative += c;
            let _ = match self.bounds.get(i) {
                Some(le) => writeln!(
                    out,
                    "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
                ),
                None => writeln!(
                    out,
                    "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
                ),
            };
        }
        let braced = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braced} {sum}");
        let _ = writeln!(out, "{name}_count{braced} {cumulative}");
    }
}

impl metrics::HistogramFn for Buckets {
    fn record(&self, value: f64) {
        self.record_n(value, 1);
    }

    fn record_many(&self, value: f64, count: usize) {
        self.record_n(value, count as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAMES: &[f64] = &[1.0, 2.0, 4.0, 8.0];

    #[test]
    fn samples_land_in_their_bucket_and_the_sum() {
        let b = Buckets::new(FRAMES);
        for v in [1.0, 1.0, 3.0, 8.0, 9.0, 300.0] {
            b.record_n(v, 1);
        }
        b.record_n(2.0, 5);
        assert_eq!(
            b.totals(),
            Totals {
                counts: vec![2, 5, 1, 1, 2],
                sum: 332.0
            }
        );
    }

    #[test]
    fn threads_add_up() {
        let b = std::sync::Arc::new(Buckets::new(FRAMES));
        let threads: Vec<_> = (0..3 * STRIPES)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        b.record_n(4.0, 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let t = b.totals();
        assert_eq!(t.counts, vec![0, 0, 3 * STRIPES as u64 * 1000, 0, 0]);
        assert_eq!(t.sum, 4.0 * 3.0 * STRIPES as f64 * 1000.0);
    }

    #[test]
    fn more_buckets_than_a_line_holds() {
        static MANY: [f64; 20] = [
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0,
            17.0, 18.0, 19.0, 20.0,
        ];
        let b = Buckets::new(&MANY);
        b.record_n(20.0, 1);
        b.record_n(21.0, 2);
        let t = b.totals();
        assert_eq!(t.counts[19], 1);
        assert_eq!(t.counts[20], 2);
        assert_eq!(t.sum, 62.0);
    }

    #[test]
    fn writes_the_exporter_format() {
        static SECONDS: [f64; 2] = [0.000_05, 1.0];
        let b = Buckets::new(&SECONDS);
        b.record_n(0.5, 2);
        let mut out = String::new();
        b.write_series(&mut out, "x_seconds", "path=\"/publish\"");
        assert_eq!(
            out,
            "x_seconds_bucket{path=\"/publish\",le=\"0.00005\"} 0\n\
             x_seconds_bucket{path=\"/publish\",le=\"1\"} 2\n\
             x_seconds_bucket{path=\"/publish\",le=\"+Inf\"} 2\n\
             x_seconds_sum{path=\"/publish\"} 1\n\
             x_seconds_count{path=\"/publish\"} 2\n"
        );
        let mut out = String::new();
        b.write_series(&mut out, "y", "");
        assert!(out.starts_with("y_bucket{le=\"0.00005\"} 0\n"), "{out}");
        assert!(out.ends_with("y_sum 1\ny_count 2\n"), "{out}");
    }

    /// Cost of one sample, here and in the exporter's own histogram (which also keeps
    /// the sample until a scrape). `cargo test -p pushgate-server --release --lib
    /// histogram::tests::record_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn record_cost() {
        use metrics::Recorder;
        const N: u64 = 10_000_000;
        let b = Buckets::new(&[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]);
        let t = std::time::Instant::now();
        for i in 0..N {
            b.record_n(std::hint::black_box((i & 3) as f64), 1);
        }
        let local = t.elapsed().as_nanos() as f64 / N as f64;
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let key = metrics::Key::from_static_name("x");
        let h = recorder.register_histogram(
            &key,
            &metrics::Metadata::new("", metrics::Level::INFO, None),
        );
        let t = std::time::Instant::now();
        for i in 0..N {
            h.record(std::hint::black_box((i & 3) as f64));
        }
        let exporter = t.elapsed().as_nanos() as f64 / N as f64;
        println!("per sample: buckets {local:.1} ns, exporter {exporter:.1} ns (+ its memory until a scrape)");
    }
}
