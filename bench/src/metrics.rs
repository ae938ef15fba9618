//! Reading pushgate's Prometheus `/metrics` (churn and recovery scenarios):
//! the connection gauge summed over shards, the opened/closed counters, and
//! the history recoveries.
//!
//! pushgate serves `/metrics` on its HTTP (publish) port. Reference peers
//! have no such endpoint; a scrape that fails or lacks the gauge yields
//! `None` and the churn report then carries RSS only.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Endpoint;

const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BODY: usize = 16 << 20;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// `pushgate_connections`, summed over its `shard` series.
    pub connections: f64,
    /// `pushgate_connections_opened_total`, summed over shards.
    pub opened_total: f64,
    /// `pushgate_connections_closed_total` per `reason`, summed over shards.
    pub closed_total: BTreeMap<String, f64>,
    /// `pushgate_history_recoveries_total` per `result` (recovery scenario).
    pub history_recoveries: BTreeMap<String, f64>,
}

/// GET /metrics on the publish endpoint's host:port. `Ok(None)`: the server
/// answered, but has no `pushgate_connections` gauge (not pushgate).
pub async fn scrape(ep: &Endpoint) -> Result<Option<Scrape>> {
    let body = tokio::time::timeout(SCRAPE_TIMEOUT, get(ep, "/metrics"))
        .await
        .context("GET /metrics timed out")??;
    Ok(parse(&body))
}

async fn get(ep: &Endpoint, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(ep.addr).await?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        ep.host
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(16 << 10);
    loop {
        if s.read_buf(&mut buf).await? == 0 {
            break;
        }
        if buf.len() > MAX_BODY {
            bail!("/metrics response larger than {MAX_BODY} bytes");
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(n) = resp.parse(&buf)? else {
        bail!("incomplete /metrics response");
    };
    if resp.code != Some(200) {
        bail!("GET {path} answered {:?}", resp.code);
    }
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    });
    let body = if chunked {
        dechunk(&buf[n..]).context("malformed chunked body")?
    } else {
        buf[n..].to_vec()
    };
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// Sum the series of the three metrics; None without the gauge.
pub fn parse(text: &str) -> Option<Scrape> {
    let mut s = Scrape::default();
    let mut seen_gauge = false;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.find('{') {
            Some(i) => (&series[..i], &series[i..]),
            None => (series, ""),
        };
        match name {
            "pushgate_connections" => {
                s.connections += v;
                seen_gauge = true;
            }
            "pushgate_connections_opened_total" => s.opened_total += v,
            "pushgate_connections_closed_total" => {
                let reason = label(labels, "reason").unwrap_or("?").to_string();
                *s.closed_total.entry(reason).or_default() += v;
            }
            "pushgate_history_recoveries_total" => {
                let result = label(labels, "result").unwrap_or("?").to_string();
                *s.history_recoveries.entry(result).or_default() += v;
            }
            _ => {}
        }
    }
    seen_gauge.then_some(s)
}

fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("{key}=\"");
    let start = labels.find(&pat)? + pat.len();
    let len = labels[start..].find('"')?;
    Some(&labels[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_shards_and_reasons() {
        let text = "# HELP pushgate_connections open\n# TYPE pushgate_connections gauge\n\
            pushgate_connections{shard=\"0\"} 3\npushgate_connections{shard=\"1\"} 4\n\
            pushgate_connections_opened_total{shard=\"0\"} 10\n\
            pushgate_connections_opened_total{shard=\"1\"} 12\n\
            pushgate_connections_closed_total{shard=\"0\",reason=\"client\"} 5\n\
            pushgate_connections_closed_total{shard=\"1\",reason=\"client\"} 6\n\
            pushgate_connections_closed_total{shard=\"1\",reason=\"slow\"} 1\n\
            pushgate_connections_other{shard=\"1\"} 99\n\
            pushgate_history_recoveries_total{result=\"recovered\"} 8\n";
        let s = parse(text).unwrap();
        assert_eq!(s.connections, 7.0);
        assert_eq!(s.opened_total, 22.0);
        assert_eq!(s.closed_total["client"], 11.0);
        assert_eq!(s.closed_total["slow"], 1.0);
        assert_eq!(s.history_recoveries["recovered"], 8.0);
        assert_eq!(parse("go_goroutines 5\n"), None);
    }

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk(b"4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n").unwrap(),
            b"abcdefg"
        );
        assert_eq!(dechunk(b"4\r\nab"), None);
    }
}
