//! Values read from a Prometheus text exposition (`GET /metrics`).

/// The value of one series, given exactly as exported (`name` or `name{labels}`).
pub fn value(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The sum of every series of `name` whose line contains `labels` (`""`: all of them).
pub fn sum(exposition: &str, name: &str, labels: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE a_total counter\na_total{shard=\"0\"} 2\na_total{shard=\"1\"} 3\na_total_other 7\nb 1.5\n";

    #[test]
    fn reads_one_series_or_sums_a_metric() {
        assert_eq!(value(TEXT, "b"), Some(1.5));
        assert_eq!(value(TEXT, "a_total{shard=\"1\"}"), Some(3.0));
        assert_eq!(value(TEXT, "missing"), None);
        assert_eq!(sum(TEXT, "a_total", ""), 5.0, "not a_total_other");
        assert_eq!(sum(TEXT, "a_total", "shard=\"0\""), 2.0);
    }
}
