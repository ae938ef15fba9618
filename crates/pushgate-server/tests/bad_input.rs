//! Bad input gets a clear answer, and nobody else is affected.

mod support;

use futures_util::SinkExt;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn bad_commands_get_error_replies_and_the_connection_stays() {
    let gw = start(config()).await;
    let mut c = connect(&gw).await;
    let cases = [
        ("{not json", "bad_json"),
        (r#"{"type":"dance","id":5}"#, "unknown_command"),
        (
            r#"{"type":"subscribe","channels":["bad name!"],"id":6}"#,
            "bad_channel",
        ),
        (r#"{"type":"subscribe","channels":[]}"#, "bad_request"),
    ];
    for (text, code) in cases {
        c.ws.send(Message::text(text)).await.unwrap();
        let r = next_json(&mut c.ws).await.unwrap();
        assert_eq!(r["type"], "error", "{text} -> {r}");
        assert_eq!(r["code"], code, "{text} -> {r}");
    }
    c.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(
        next_json(&mut c.ws).await.unwrap()["code"],
        "binary_not_supported"
    );
    // Still a working connection.
    subscribe(&mut c, &["ok"]).await;
    publish(&gw, "channel=ok", "fine").await;
    expect_pub(&mut c.ws, Some("ok"), "fine").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn subscription_limit_is_enforced_with_an_error_reply() {
    let mut cfg = config();
    cfg.max_subscriptions_per_conn = 2;
    let gw = start(cfg).await;
    let mut c = connect(&gw).await;
    subscribe(&mut c, &["a", "b"]).await;
    send_json(
        &mut c.ws,
        serde_json::json!({"type": "subscribe", "channels": ["c"], "id": 9}),
    )
    .await;
    let r = next_json(&mut c.ws).await.unwrap();
    assert_eq!(r["code"], "subscription_limit", "{r}");
    assert_eq!(r["id"], 9);
    assert_eq!(publish(&gw, "channel=c", "x").await["enqueued"], 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_text_closes_with_1007_without_affecting_others() {
    let gw = start(config()).await;
    let mut bystander = connect(&gw).await;
    let mut raw = raw_upgrade(gw.ws_addr()).await;
    raw.write_all(&client_frame(1, &[0x68, 0xff, 0xfe]))
        .await
        .unwrap();
    assert_eq!(read_until_close(&mut raw).await, Some(1007));
    publish(&gw, "all=true", "unaffected").await;
    expect_pub(&mut bystander.ws, None, "unaffected").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn oversized_messages_close_with_1009() {
    let mut cfg = config();
    cfg.max_message_bytes = 1024;
    let gw = start(cfg).await;
    let mut c = connect(&gw).await;
    c.ws.send(Message::text("x".repeat(2000))).await.unwrap();
    match next_msg(&mut c.ws).await.unwrap() {
        Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
    // The same limit applies to a message sent in fragments.
    let mut raw = raw_upgrade(gw.ws_addr()).await;
    let first = pushgate_test_support::client_frame(false, 1, &[b'a'; 600]);
    raw.write_all(&first).await.unwrap();
    raw.write_all(&client_frame(0, &[b'b'; 600])).await.unwrap();
    assert_eq!(read_until_close(&mut raw).await, Some(1009));
    gw.shutdown().await;
}

#[tokio::test]
async fn protocol_violations_close_with_1002() {
    let gw = start(config()).await;
    for frame in [
        vec![0x81, 0x02, b'h', b'i'], // unmasked client frame
        {
            let mut f = client_frame(1, b"x");
            f[0] |= 0x40;
            f
        }, // reserved bit
        client_frame(0x3, b"x"),      // reserved opcode
        client_frame(0x0, b"x"),      // continuation with nothing to continue
    ] {
        let mut raw = raw_upgrade(gw.ws_addr()).await;
        raw.write_all(&frame).await.unwrap();
        assert_eq!(read_until_close(&mut raw).await, Some(1002), "{frame:?}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn garbage_and_non_websocket_requests_get_http_errors() {
    let gw = start(config()).await;
    let ws = gw.ws_addr();
    assert_eq!(http(ws, "GET", "/ws", b"").await.0, 426);
    assert_eq!(http(ws, "GET", "/elsewhere", b"").await.0, 404);
    let mut raw = tokio::net::TcpStream::connect(ws).await.unwrap();
    raw.write_all(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        .await
        .unwrap();
    let mut resp = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut resp)
        .await
        .unwrap();
    assert!(
        resp.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    // RFC 6455 upgrades are HTTP/1.1: an HTTP/1.0 one is refused.
    let mut old = tokio::net::TcpStream::connect(ws).await.unwrap();
    old.write_all(
        b"GET /ws HTTP/1.0\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut resp = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut old, &mut resp)
        .await
        .unwrap();
    assert!(
        resp.starts_with(b"HTTP/1.1 505"),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    // A trusted user header that is not a valid user id.
    let mut req = ws_request(&gw, "");
    req.headers_mut()
        .insert("x-pushgate-user", "<alice>".parse().unwrap());
    assert_eq!(try_connect(req).await.err(), Some(400));
    // And the gateway still serves.
    let mut c = connect(&gw).await;
    publish(&gw, "all=true", "ok").await;
    expect_pub(&mut c.ws, None, "ok").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn publish_api_refuses_bad_requests_with_clear_statuses() {
    let mut cfg = config();
    cfg.max_payload_bytes = 1000;
    let gw = start(cfg).await;
    let api = gw.http_addr();
    let mut c = connect(&gw).await;
    let cases: [(&str, &[u8], u16); 7] = [
        ("/publish", b"x", 400),                    // no target: never a broadcast
        ("/publish?all=true&channel=a", b"x", 400), // mixed targets
        ("/publish?channel=bad%20name", b"x", 400), // invalid channel
        ("/publish?conn=nonsense", b"x", 400),      // malformed id
        ("/publish?all=true", &[0xff, 0xfe], 400),  // text must be UTF-8
        ("/publish?all=true", &[b'x'; 1001], 413),  // too large
        ("/nowhere", b"", 404),
    ];
    for (path, body, want) in cases {
        let (status, text) = http(api, "POST", path, body).await;
        assert_eq!(status, want, "{path}: {text}");
        assert!(text.contains("error"), "{path}: {text}");
    }
    assert_eq!(http(api, "GET", "/publish", b"").await.0, 405);
    assert_eq!(http(api, "GET", "/livez", b"").await.0, 200);
    assert_eq!(http(api, "GET", "/readyz", b"").await.0, 200);
    // None of the refused requests reached the client.
    expect_nothing_before(&gw, &mut [&mut c], "only this").await;
    gw.shutdown().await;
}

/// Autobahn 3.2/4.1.3/5.15: a command followed by a bad frame in the same write gets
/// its reply before the close frame (the reply is not dropped with the connection).
#[tokio::test]
async fn a_reply_queued_before_a_protocol_error_is_sent_before_the_close() {
    use tokio::io::AsyncReadExt;
    let gw = start(config()).await;
    let mut raw = raw_upgrade(gw.ws_addr()).await;
    let mut bytes = client_frame(1, br#"{"type":"ping","id":7}"#);
    bytes.extend_from_slice(&[0x81, 0x01, b'a']); // unmasked: a protocol error
    raw.write_all(&bytes).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, raw.read_to_end(&mut got))
        .await
        .expect("the server closes in time")
        .unwrap();
    // Server frames are unmasked and small here: [op, len, payload..].
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 2 <= got.len() {
        let len = got[at + 1] as usize;
        frames.push((got[at] & 0x0f, got[at + 2..at + 2 + len].to_vec()));
        at += 2 + len;
    }
    let texts: Vec<String> = frames
        .iter()
        .filter(|f| f.0 == 1)
        .map(|f| String::from_utf8_lossy(&f.1).into_owned())
        .collect();
    assert!(
        texts.last().unwrap().contains(r#""type":"pong""#),
        "{texts:?}"
    );
    let last = frames.last().unwrap();
    assert_eq!(last.0, 8, "the close frame comes last");
    assert_eq!(u16::from_be_bytes([last.1[0], last.1[1]]), 1002);
    gw.shutdown().await;
}

#[tokio::test]
async fn over_wide_publications_and_bad_user_targets_are_refused_with_400() {
    let gw = start(config()).await;
    let mut c = connect_as(&gw, Some("alice")).await;
    subscribe(&mut c, &["a"]).await;
    let refused = || {
        metric(
            &gw,
            "pushgate_publications_refused_total",
            "reason=\"too_many_targets\"",
        )
    };
    let before = refused().await;
    let list = |key: &str, n: usize| {
        (0..n)
            .map(|i| format!("{key}={key}{i}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    let cases = [
        (
            list("channel", 101),
            "101 channel targets in one publication; at most 100",
        ),
        (
            list("user", 1001),
            "1001 user targets in one publication; at most 1000",
        ),
        ("user=a%00b".to_string(), "user id contains"),
        (format!("user={}", "u".repeat(200)), "longer than 128 bytes"),
    ];
    for (query, want) in cases {
        let (status, body) = http(gw.http_addr(), "POST", &format!("/publish?{query}"), b"x").await;
        assert_eq!(status, 400, "{want}: {body}");
        assert!(body.contains(want), "{want}: {body}");
    }
    assert!(refused().await >= before + 2.0);
    // At the limit (duplicates count) it is accepted, and a name given twice is
    // delivered once.
    let mut q = list("channel", 98);
    q.push_str("&channel=a&channel=a");
    let r = publish(&gw, &q, "once").await;
    assert_eq!(r["enqueued"], 1, "{r}");
    expect_pub(&mut c.ws, Some("a"), "once").await;
    let r = publish(&gw, "user=alice&user=alice", "for alice").await;
    assert_eq!(r["enqueued"], 1, "{r}");
    expect_pub(&mut c.ws, None, "for alice").await;
    expect_nothing_before(&gw, &mut [&mut c], "end").await;
    gw.shutdown().await;
}
