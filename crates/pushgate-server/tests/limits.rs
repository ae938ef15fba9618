//! Limits answer clearly when exceeded, and never harm the other clients.

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn as_user(
    gw: &pushgate_server::Gateway,
    user: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = ws_request(gw, "");
    req.headers_mut()
        .insert("x-pushgate-user", user.parse().unwrap());
    req
}

#[tokio::test]
async fn connections_per_node_are_capped_with_503_and_places_come_back() {
    let mut cfg = config();
    cfg.max_connections = 2;
    let gw = start(cfg).await;
    let mut a = connect(&gw).await;
    let _b = connect(&gw).await;
    assert_eq!(try_connect(ws_request(&gw, "")).await.err(), Some(503));
    assert!(
        metric(
            &gw,
            "pushgate_limit_rejections_total",
            "limit=\"connections\""
        )
        .await
            >= 1.0
    );
    // A closed connection frees its place.
    a.ws.send(Message::Close(None)).await.unwrap();
    drop(a);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match try_connect(ws_request(&gw, "")).await {
            Ok(_) => break,
            Err(503) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(s) => panic!("still refused: {s}"),
        }
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn connections_per_user_are_capped_with_503_without_affecting_other_users() {
    let mut cfg = config();
    cfg.max_connections_per_user = 2;
    let gw = start(cfg).await;
    let _a1 = try_connect(as_user(&gw, "alice")).await.unwrap();
    let _a2 = try_connect(as_user(&gw, "alice")).await.unwrap();
    assert_eq!(try_connect(as_user(&gw, "alice")).await.err(), Some(503));
    let (mut bob, _) = try_connect(as_user(&gw, "bob"))
        .await
        .expect("bob is not affected");
    assert!(
        metric(
            &gw,
            "pushgate_limit_rejections_total",
            "limit=\"user_connections\""
        )
        .await
            >= 1.0
    );
    publish(&gw, "user=bob", "hi bob").await;
    expect_pub(&mut bob.ws, None, "hi bob").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn connection_attempts_per_address_are_rate_limited_with_429() {
    let mut cfg = config();
    cfg.max_connection_rate_per_ip = 2;
    let gw = start(cfg).await;
    // Far more attempts than the burst of 2: some are answered 429 (or reset) at once.
    let mut refused = 0;
    for _ in 0..20 {
        match try_connect(ws_request(&gw, "")).await {
            Ok(_) => {}
            Err(429 | 0) => refused += 1,
            Err(s) => panic!("unexpected status {s}"),
        }
    }
    assert!(refused > 0);
    assert!(
        metric(
            &gw,
            "pushgate_limit_rejections_total",
            "limit=\"connection_rate\""
        )
        .await
            >= 1.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_client_that_floods_commands_is_closed_with_1008_and_others_are_served() {
    let mut cfg = config();
    cfg.max_inbound_messages_per_sec = 20;
    let gw = start(cfg).await;
    let mut bystander = connect(&gw).await;
    subscribe(&mut bystander, &["news"]).await;
    let mut flood = raw_upgrade(gw.ws_addr()).await;
    let ping = client_frame(1, br#"{"type":"ping"}"#);
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 500)
        .collect();
    // The gateway may close while we are still writing; that is the point.
    let _ = flood.write_all(&burst).await;
    assert_eq!(read_until_close(&mut flood).await, Some(1008));
    publish(&gw, "channel=news", "unaffected").await;
    expect_pub(&mut bystander.ws, Some("news"), "unaffected").await;
    assert!(
        metric(
            &gw,
            "pushgate_limit_rejections_total",
            "limit=\"inbound_rate\""
        )
        .await
            >= 1.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_frame_announcing_a_huge_length_is_refused_with_1009_before_its_payload() {
    let mut cfg = config();
    cfg.max_message_bytes = 4096;
    let gw = start(cfg).await;
    let mut raw = raw_upgrade(gw.ws_addr()).await;
    // A masked text frame header claiming 1 GiB, and no payload at all.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    raw.write_all(&header).await.unwrap();
    assert_eq!(read_until_close(&mut raw).await, Some(1009));
    gw.shutdown().await;
}

#[tokio::test]
async fn garbage_bytes_after_the_upgrade_end_only_that_connection() {
    let gw = start(config()).await;
    let mut bystander = connect(&gw).await;
    let mut garbage = Vec::new();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..4096 {
        // xorshift: deterministic noise
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push(x as u8);
    }
    for chunk in [&garbage[..], b"\x00\x00\x00\x00", b"GET / HTTP/1.1\r\n\r\n"] {
        let mut raw = raw_upgrade(gw.ws_addr()).await;
        let _ = raw.write_all(chunk).await;
        // Closed with a protocol error code (or simply dropped): never kept open.
        let code = read_until_close(&mut raw).await;
        assert!(matches!(code, None | Some(1002 | 1007 | 1009)), "{code:?}");
    }
    publish(&gw, "all=true", "unaffected").await;
    expect_pub(&mut bystander.ws, None, "unaffected").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn thousands_of_half_open_handshakes_do_not_stop_anyone_else() {
    let mut cfg = config();
    cfg.handshake_timeout_ms = 1_500;
    let gw = start(cfg).await;
    let addr = gw.ws_addr();
    // 2,000 sockets that send half a request line and then nothing (a slowloris).
    let mut half_open = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /ws HTT").await.unwrap();
        half_open.push(s);
    }
    // A normal client still connects, subscribes and receives.
    let mut c = connect(&gw).await;
    subscribe(&mut c, &["news"]).await;
    publish(&gw, "channel=news", "served").await;
    expect_pub(&mut c.ws, Some("news"), "served").await;
    // And the half-open ones are cut after the handshake timeout (EOF, no response).
    for s in half_open.iter_mut().step_by(97) {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("cut by the handshake timeout")
            .unwrap_or(0);
        assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    }
    assert!(metric(&gw, "pushgate_handshake_refused_total", "status=\"408\"").await >= 1.0);
    gw.shutdown().await;
}
