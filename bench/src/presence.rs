//! `pushgate-bench presence`: presence join/leave throughput.
//!
//! Opens `--conns` connections spread over the nodes (`--ws`, comma-separated),
//! then, `--cycles` times: every connection subscribes to one of `--channels`
//! presence channels (all subscribes written before any reply is read), and the
//! clock stops when `GET /presence` on every node (`--node-http`) lists exactly
//! all of them; then every connection unsubscribes, and the clock stops when every
//! node lists none. Joins/s and leaves/s are the connections over those times: they
//! include the Redis writes and the cross-node reads, not just the local accept
//! (the time until every `subscribed` reply arrived is reported too).
//!
//! The gateway needs a `[[presence]]` rule matching `pbench:*`.

use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::WorkerConfig;
use crate::frame;
use crate::target::Endpoint;

pub struct Args {
    pub ws: Vec<String>,
    pub http: Vec<String>,
    pub conns: usize,
    pub channels: usize,
    pub cycles: usize,
    pub deadline: Duration,
}

#[derive(Debug, Default, Serialize)]
pub struct Cycle {
    /// All `subscribed` replies received, seconds after the first subscribe was sent.
    pub joined_local_s: f64,
    /// Every node lists every connection.
    pub joined_everywhere_s: f64,
    pub unsubscribed_local_s: f64,
    pub left_everywhere_s: f64,
    pub joins_per_s: f64,
    pub leaves_per_s: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub conns: usize,
    pub channels: usize,
    pub nodes: usize,
    pub cycles: Vec<Cycle>,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    seed: u64,
}

impl Conn {
    async fn send(&mut self, text: &str) -> Result<()> {
        let mut out = Vec::with_capacity(text.len() + 8);
        frame::encode_client_frame(
            frame::OP_TEXT,
            text.as_bytes(),
            frame::mask_key(&mut self.seed),
            &mut out,
        );
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Reads text frames until one whose `type` is `want` (events and others are skipped).
    async fn until(&mut self, want: &str) -> Result<()> {
        let needle = format!(r#""type":"{want}""#);
        loop {
            while let Some(h) = frame::parse_header(&self.buf)? {
                if self.buf.len() < h.total_len() {
                    break;
                }
                let payload = &self.buf[h.header_len..h.total_len()];
                let hit = h.opcode == frame::OP_TEXT
                    && std::str::from_utf8(payload).is_ok_and(|t| t.contains(&needle));
                if h.opcode == frame::OP_CLOSE {
                    bail!("the server closed the connection");
                }
                self.buf.drain(..h.total_len());
                if hit {
                    return Ok(());
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("connection closed");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Sum over `channels` of `clients_count` on one node (`GET /presence`).
async fn listed(http: &Endpoint, channels: usize) -> Result<u64> {
    let mut total = 0;
    for c in 0..channels {
        let path = format!("/presence?channel=pbench:{c}");
        let body = get(http, &path).await?;
        let v: serde_json::Value = serde_json::from_str(&body).context("presence body")?;
        total += v["clients_count"].as_u64().context("clients_count")?;
    }
    Ok(total)
}

async fn get(http: &Endpoint, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(http.addr).await?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        http.host
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out);
    if !text.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", text.lines().next().unwrap_or_default());
    }
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// Polls every node until each lists `want` connections in all channels.
async fn wait_listed(
    nodes: &[Endpoint],
    channels: usize,
    want: u64,
    deadline: Instant,
) -> Result<()> {
    for n in nodes {
        loop {
            let got = listed(n, channels).await?;
            if got == want {
                break;
            }
            if Instant::now() > deadline {
                bail!("{}: {got} listed, want {want}", n.host);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(())
}

pub async fn run(a: Args) -> Result<Report> {
    let ws: Vec<Rc<WorkerConfig>> =
        a.ws.iter()
            .map(|u| {
                Ok(Rc::new(WorkerConfig {
                    ws: Endpoint::parse(u, "ws")?,
                    conns: 0,
                    first_index: 0,
                    max_seq: 0,
                    size: 0,
                    no_read: false,
                    channels: None,
                    handshake_concurrency: 1,
                    connect_timeout: Duration::from_secs(10),
                    deflate: false,
                    pusher: false,
                }))
            })
            .collect::<Result<_>>()?;
    let http: Vec<Endpoint> = a
        .http
        .iter()
        .map(|u| Endpoint::parse(u, "http"))
        .collect::<Result<_>>()?;
    if ws.is_empty() || http.is_empty() {
        bail!("--ws and --node-http are required");
    }
    let mut conns = Vec::with_capacity(a.conns);
    for i in 0..a.conns {
        let (stream, buf) = crate::conn::open(i, &ws[i % ws.len()]).await?;
        let mut c = Conn {
            stream,
            buf,
            seed: 0x9e37_79b9_7f4a_7c15 ^ i as u64,
        };
        c.until("connected").await?;
        conns.push(c);
    }
    let mut report = Report {
        conns: a.conns,
        channels: a.channels,
        nodes: ws.len(),
        cycles: Vec::new(),
    };
    for _ in 0..a.cycles {
        let mut cy = Cycle::default();
        let deadline = Instant::now() + a.deadline;
        let t0 = Instant::now();
        for (i, c) in conns.iter_mut().enumerate() {
            c.send(&format!(
                r#"{{"type":"subscribe","channel":"pbench:{}"}}"#,
                i % a.channels
            ))
            .await?;
        }
        for c in conns.iter_mut() {
            c.until("subscribed").await?;
        }
        cy.joined_local_s = t0.elapsed().as_secs_f64();
        wait_listed(&http, a.channels, a.conns as u64, deadline).await?;
        cy.joined_everywhere_s = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        for (i, c) in conns.iter_mut().enumerate() {
            c.send(&format!(
                r#"{{"type":"unsubscribe","channel":"pbench:{}"}}"#,
                i % a.channels
            ))
            .await?;
        }
        for c in conns.iter_mut() {
            c.until("unsubscribed").await?;
        }
        cy.unsubscribed_local_s = t1.elapsed().as_secs_f64();
        wait_listed(&http, a.channels, 0, deadline).await?;
        cy.left_everywhere_s = t1.elapsed().as_secs_f64();
        cy.joins_per_s = a.conns as f64 / cy.joined_everywhere_s;
        cy.leaves_per_s = a.conns as f64 / cy.left_everywhere_s;
        eprintln!(
            "presence: {} joins listed on {} node(s) in {:.3} s ({:.0}/s; subscribed {:.3} s), leaves in {:.3} s ({:.0}/s)",
            a.conns, ws.len(), cy.joined_everywhere_s, cy.joins_per_s, cy.joined_local_s,
            cy.left_everywhere_s, cy.leaves_per_s
        );
        report.cycles.push(cy);
    }
    Ok(report)
}
