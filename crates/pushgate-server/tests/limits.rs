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

/// A stream of frames none of which is a command, each costing the shard work:
/// 0: empty pongs; 1: empty continuation frames (after an unfinished text frame);
/// 2: empty pongs, continuations and pings mixed.
fn flood_chunk(kind: usize) -> Vec<u8> {
    let one = match kind {
        0 => client_frame(0xA, b""),
        1 => client_fragment(false, 0x0, b""),
        _ => [
            client_frame(0xA, b""),
            client_fragment(false, 0x0, b""),
            client_frame(0x9, b""),
        ]
        .concat(),
    };
    one.iter()
        .copied()
        .cycle()
        .take(one.len() * 20_000)
        .collect()
}

/// A raw client that streams [`flood_chunk`]s until the gateway closes it: the read
/// half (for the close frame) and the writing task.
async fn flooder(
    gw: &pushgate_server::Gateway,
    kind: usize,
) -> (tokio::net::tcp::OwnedReadHalf, tokio::task::JoinHandle<()>) {
    let (read, mut write) = raw_upgrade(gw.ws_addr()).await.into_split();
    let writer = tokio::spawn(async move {
        if kind != 0 {
            // Open a fragmented message for the continuation frames to continue.
            let _ = write.write_all(&client_fragment(false, 0x1, b"")).await;
        }
        let chunk = flood_chunk(kind);
        while write.write_all(&chunk).await.is_ok() {}
    });
    (read, writer)
}

/// Every healthy client gets a reply to a ping command and every publication, in order.
async fn healthy_clients_are_served(gw: &pushgate_server::Gateway, clients: &mut [Client]) {
    for (i, c) in clients.iter_mut().enumerate() {
        send_json(&mut c.ws, serde_json::json!({"type": "ping", "id": i})).await;
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let r = next_json(&mut c.ws).await.unwrap();
        assert_eq!(r["type"], "pong", "{r}");
        assert_eq!(r["id"], i, "{r}");
    }
    for n in 0..10 {
        publish(gw, "channel=news", &format!("m{n}")).await;
    }
    for c in clients.iter_mut() {
        for n in 0..10 {
            expect_pub(&mut c.ws, Some("news"), &format!("m{n}")).await;
        }
    }
}

async fn healthy_clients(gw: &pushgate_server::Gateway, n: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = connect(gw).await;
        subscribe(&mut c, &["news"]).await;
        clients.push(c);
    }
    clients
}

#[tokio::test]
async fn clients_streaming_empty_pongs_or_continuations_are_closed_with_1008() {
    let mut cfg = config();
    cfg.max_inbound_messages_per_sec = 100;
    let gw = start(cfg).await;
    let mut healthy = healthy_clients(&gw, 200).await;
    let before = metric(
        &gw,
        "pushgate_limit_rejections_total",
        "limit=\"inbound_rate\"",
    )
    .await;
    let mut flooders = Vec::new();
    for kind in 0..3 {
        flooders.push(flooder(&gw, kind).await);
    }
    healthy_clients_are_served(&gw, &mut healthy).await;
    for (kind, (mut read, writer)) in flooders.into_iter().enumerate() {
        assert_eq!(
            read_until_close(&mut read).await,
            Some(1008),
            "flood {kind}"
        );
        tokio::time::timeout(WAIT, writer)
            .await
            .expect("the flooder's writes fail once it is closed")
            .unwrap();
    }
    let after = metric(
        &gw,
        "pushgate_limit_rejections_total",
        "limit=\"inbound_rate\"",
    )
    .await;
    assert!(after - before >= 3.0, "{before} -> {after}");
    assert!(
        metric(
            &gw,
            "pushgate_connections_closed_total",
            "reason=\"inbound_flood\""
        )
        .await
            >= 3.0
    );
    healthy_clients_are_served(&gw, &mut healthy).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn with_no_inbound_limits_a_flood_still_leaves_the_shard_to_everyone() {
    // The per-wake-up read budget alone: the flooders are never closed, and the
    // clients sharing their shards still get every reply and publication.
    let mut cfg = config();
    cfg.max_inbound_messages_per_sec = 0;
    cfg.max_inbound_bytes_per_sec = 0;
    let gw = start(cfg).await;
    let mut healthy = healthy_clients(&gw, 200).await;
    let mut flooders = Vec::new();
    for kind in 0..2 {
        flooders.push(flooder(&gw, kind).await);
    }
    healthy_clients_are_served(&gw, &mut healthy).await;
    for (_, writer) in &flooders {
        assert!(!writer.is_finished(), "no limit: the flooder is still open");
    }
    for (_, writer) in flooders {
        writer.abort();
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn a_client_over_the_inbound_byte_rate_is_closed_with_1008() {
    let mut cfg = config();
    cfg.max_inbound_messages_per_sec = 0;
    cfg.max_message_bytes = 1024;
    cfg.max_inbound_bytes_per_sec = 4096;
    let gw = start(cfg).await;
    let mut bystander = connect(&gw).await;
    let mut raw = raw_upgrade(gw.ws_addr()).await;
    // 64 pongs of 125 bytes: 8 KiB, twice the limit, without a single command.
    let pong = client_frame(0xA, &[b'x'; 125]);
    let burst: Vec<u8> = pong.iter().copied().cycle().take(pong.len() * 64).collect();
    let _ = raw.write_all(&burst).await;
    assert_eq!(read_until_close(&mut raw).await, Some(1008));
    assert!(
        metric(
            &gw,
            "pushgate_limit_rejections_total",
            "limit=\"inbound_bytes\""
        )
        .await
            >= 1.0
    );
    publish(&gw, "all=true", "unaffected").await;
    expect_pub(&mut bystander.ws, None, "unaffected").await;
    gw.shutdown().await;
}

/// A measurement, not a check (docs/security.md quotes it): ping round trips of a client
/// on the one shard of a node where another client streams empty pongs with no inbound
/// limits. `cargo test -p pushgate-server --test limits round_trips_beside -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn round_trips_beside_a_flood() {
    let mut cfg = config();
    cfg.shards = 1;
    cfg.max_inbound_messages_per_sec = 0;
    cfg.max_inbound_bytes_per_sec = 0;
    let gw = start(cfg).await;
    let mut healthy = healthy_clients(&gw, 20).await;
    let (_read, writer) = flooder(&gw, 0).await;
    let mut rtts = Vec::new();
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let t = std::time::Instant::now();
        send_json(&mut healthy[0].ws, serde_json::json!({"type": "ping"})).await;
        let r = next_json(&mut healthy[0].ws).await.unwrap();
        assert_eq!(r["type"], "pong", "{r}");
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rtts.sort_by(f64::total_cmp);
    let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{} round trips: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        rtts.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    writer.abort();
    gw.shutdown().await;
}
