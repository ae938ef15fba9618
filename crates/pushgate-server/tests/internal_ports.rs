//! The internal HTTP and gRPC ports hold under clients that connect and do nothing,
//! send half a request, announce a body they never send, or never answer a keepalive:
//! each such connection is closed, the ports take a bounded number at once, and the
//! WebSocket port keeps serving meanwhile.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (EOF or reset); returns what it sent.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("closed by the server in time")
        {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

async fn open_idle(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(TcpStream::connect(addr).await.unwrap());
    }
    v
}

#[tokio::test]
async fn idle_and_half_sent_requests_on_internal_ports_are_closed_after_their_timeouts() {
    let mut cfg = config();
    cfg.internal_header_timeout_ms = 1_000;
    cfg.internal_body_timeout_ms = 1_000;
    cfg.internal_idle_timeout_ms = 1_500;
    cfg.internal_max_connections = 4_000;
    let gw = start(cfg).await;
    let (http, grpc) = (gw.http_addr(), gw.grpc_addr());
    let mut idle_http = open_idle(http, 1_000).await;
    let mut idle_grpc = open_idle(grpc, 1_000).await;
    let mut half_head = TcpStream::connect(http).await.unwrap();
    half_head
        .write_all(b"POST /publish?all=true HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut no_body = TcpStream::connect(http).await.unwrap();
    no_body
        .write_all(
            b"POST /publish?all=true HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n",
        )
        .await
        .unwrap();
    let mut half_preface = TcpStream::connect(grpc).await.unwrap();
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();

    // Meanwhile the gateway serves WebSocket clients and publishers.
    let mut c = connect(&gw).await;
    subscribe(&mut c, &["news"]).await;
    publish(&gw, "channel=news", "served").await;
    expect_pub(&mut c.ws, Some("news"), "served").await;

    let answer = String::from_utf8_lossy(&until_closed(&mut no_body).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(until_closed(&mut half_head).await.is_empty());
    until_closed(&mut half_preface).await; // after the server's own SETTINGS frame
    for s in idle_http.iter_mut().chain(idle_grpc.iter_mut()) {
        // The gRPC port sends its HTTP/2 settings first; then nothing but the close.
        until_closed(s).await;
    }
    let g = &gw;
    let timeouts = move |port: &'static str, kind: &'static str| async move {
        let labels = format!("port=\"{port}\",kind=\"{kind}\"");
        metric(g, "pushgate_internal_timeouts_total", &labels).await
    };
    assert!(timeouts("http", "body").await >= 1.0);
    let http_heads = timeouts("http", "header").await + timeouts("http", "idle").await;
    assert!(http_heads >= 1_001.0, "{http_heads}");
    assert!(timeouts("grpc", "idle").await >= 1_001.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn each_internal_port_takes_at_most_its_connection_limit() {
    let mut cfg = config();
    cfg.internal_max_connections = 4;
    let gw = start(cfg).await;
    for addr in [gw.http_addr(), gw.grpc_addr()] {
        let held = open_idle(addr, 4).await;
        let mut over = TcpStream::connect(addr).await.unwrap();
        assert!(
            until_closed(&mut over).await.is_empty(),
            "closed at once, without an answer"
        );
        drop(held);
    }
    // Places come back once connections close.
    let deadline = tokio::time::Instant::now() + WAIT;
    let refused = loop {
        let mut s = TcpStream::connect(gw.http_addr()).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&until_closed(&mut s).await).into_owned();
        if text.starts_with("HTTP/1.1 200") {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the port stays full"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for port in ["http", "grpc"] {
        let line = format!("pushgate_internal_connections_refused_total{{port=\"{port}\"}}");
        assert!(
            refused
                .lines()
                .any(|l| l.starts_with(&line) && !l.ends_with(" 0")),
            "{line} in {refused}"
        );
    }
    gw.shutdown().await;
}

/// Reads HTTP/2 frames until the server closes; returns whether a PING came first.
async fn pings_then_closes(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut pinged = false;
    let mut chunk = [0u8; 4096];
    loop {
        while buf.len() >= 9 {
            let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
            if buf.len() < 9 + len {
                break;
            }
            // Type 6 without the ACK flag: the server's keepalive PING (never answered).
            pinged |= buf[3] == 6 && buf[4] & 1 == 0;
            buf.drain(..9 + len);
        }
        match tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("closed by the server in time")
        {
            Ok(0) | Err(_) => return pinged,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn a_grpc_connection_that_does_not_answer_keepalive_pings_is_closed() {
    let mut cfg = config();
    cfg.grpc_keepalive_interval_ms = 200;
    cfg.grpc_keepalive_timeout_ms = 300;
    let gw = start(cfg).await;
    let mut s = TcpStream::connect(gw.grpc_addr()).await.unwrap();
    // The client preface and an empty SETTINGS frame: a valid HTTP/2 client, then mute.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    assert!(pings_then_closes(&mut s).await, "pinged, then closed");
    gw.shutdown().await;
}

#[tokio::test]
async fn with_http_token_set_publishing_needs_it_and_probes_do_not() {
    let mut cfg = config();
    cfg.http_token = "s3cret".into();
    let gw = start(cfg).await;
    let mut c = connect(&gw).await;
    let api = gw.http_addr();
    for auth in [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: s3cret\r\n",
    ] {
        let (status, body) = http_with(api, "POST", "/publish?all=true", auth, b"x").await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert!(
            body.contains("bearer token") || body.contains("authorization"),
            "{body}"
        );
    }
    let (status, body) = http_with(
        api,
        "POST",
        "/publish?all=true",
        "Authorization: Bearer s3cret\r\n",
        b"with the token",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    expect_pub(&mut c.ws, None, "with the token").await;
    for open in ["/livez", "/readyz", "/metrics"] {
        assert_eq!(http(api, "GET", open, b"").await.0, 200, "{open}");
    }
    assert!(
        metric(
            &gw,
            "pushgate_http_requests_total",
            "path=\"/publish\",status=\"401\""
        )
        .await
            >= 3.0
    );
    gw.shutdown().await;
}
