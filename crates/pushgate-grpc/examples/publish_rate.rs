//! Publications per second accepted by one gateway through three ingress paths, on
//! the same work, in one run: HTTP `POST /publish` (one keep-alive connection,
//! sequential), gRPC `Publish` (one channel, sequential) and gRPC `PublishStream`
//! (one stream, the server's window keeps publications in flight).
//!
//! It starts nothing itself: run a gateway, then
//!
//! ```sh
//! cargo run --release -p pushgate-grpc --example publish_rate -- \
//!     --http 127.0.0.1:8081 --grpc 127.0.0.1:50051 -n 20000
//! ```
//!
//! Every publication goes to one channel (`--channel`, default `bench`); the clock
//! stops when the last reply (HTTP response, unary reply, stream ack) has arrived, and
//! every reply is checked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pushgate_grpc::pb::{self, pushgate_client::PushgateClient};

struct Args {
    http: String,
    grpc: String,
    n: u64,
    channel: String,
    payload: usize,
}

fn args() -> Args {
    let mut a = Args {
        http: "127.0.0.1:8081".into(),
        grpc: "127.0.0.1:50051".into(),
        n: 20_000,
        channel: "bench".into(),
        payload: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--http" => a.http = val(),
            "--grpc" => a.grpc = val(),
            "-n" => a.n = val().parse().expect("-n is a number"),
            "--channel" => a.channel = val(),
            "--payload" => a.payload = val().parse().expect("--payload is a byte count"),
            other => panic!("unknown flag {other}; see the doc comment of this example"),
        }
    }
    a
}

/// Sequential `POST /publish` on one keep-alive connection.
fn http_rate(a: &Args, body: &str) -> Duration {
    let mut s = TcpStream::connect(&a.http).expect("connect to the HTTP API");
    s.set_nodelay(true).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let head = format!(
        "POST /publish?channel={} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
        a.channel,
        body.len()
    );
    let req = [head.as_bytes(), body.as_bytes()].concat();
    let started = Instant::now();
    let mut line = String::new();
    for _ in 0..a.n {
        s.write_all(&req).unwrap();
        let mut len = 0usize;
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("HTTP/1.1 200"),
            "HTTP publish failed: {line}"
        );
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut b = vec![0; len];
        r.read_exact(&mut b).unwrap();
    }
    started.elapsed()
}

fn publication(a: &Args, body: &str) -> pb::Publication {
    pb::Publication {
        target: Some(pb::Target {
            kind: Some(pb::target::Kind::Channels(pb::Names {
                names: vec![a.channel.clone()],
            })),
        }),
        payload: Some(pb::publication::Payload::Text(body.to_owned())),
        exclude: String::new(),
    }
}

async fn unary_rate(a: &Args, body: &str) -> Duration {
    let mut c = PushgateClient::connect(format!("http://{}", a.grpc))
        .await
        .unwrap();
    let p = publication(a, body);
    let started = Instant::now();
    for _ in 0..a.n {
        c.publish(pb::PublishRequest {
            publication: Some(p.clone()),
        })
        .await
        .expect("gRPC publish");
    }
    started.elapsed()
}

async fn stream_rate(a: &Args, body: &str) -> Duration {
    let mut c = PushgateClient::connect(format!("http://{}", a.grpc))
        .await
        .unwrap();
    let p = publication(a, body);
    let n = a.n;
    let reqs = tokio_stream::iter((1..=n).map(move |seq| pb::PublishStreamRequest {
        seq,
        publication: Some(p.clone()),
        idempotency_key: String::new(),
    }));
    let started = Instant::now();
    let mut acks = c.publish_stream(reqs).await.unwrap().into_inner();
    let mut expect = 1;
    while let Some(ack) = acks.message().await.expect("stream ack") {
        assert_eq!(ack.seq, expect, "acks arrive in order");
        assert!(
            matches!(ack.result, Some(pb::publish_stream_reply::Result::Ok(_))),
            "{ack:?}"
        );
        expect += 1;
    }
    assert_eq!(expect - 1, n, "every publication acked");
    started.elapsed()
}

fn main() {
    let a = args();
    let body = "x".repeat(a.payload);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows = [
        (
            "HTTP POST /publish (keep-alive, sequential)",
            http_rate(&a, &body),
        ),
        (
            "gRPC Publish (unary, sequential)",
            rt.block_on(unary_rate(&a, &body)),
        ),
        (
            "gRPC PublishStream (one stream)",
            rt.block_on(stream_rate(&a, &body)),
        ),
    ];
    println!("| ingress | publications | seconds | publications/s |");
    println!("|---|---:|---:|---:|");
    for (name, took) in rows {
        println!(
            "| {name} | {} | {:.3} | {:.0} |",
            a.n,
            took.as_secs_f64(),
            a.n as f64 / took.as_secs_f64()
        );
    }
}
