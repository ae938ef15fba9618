//! Server-Sent Events on the WebSocket listener, through the real gateway: a raw-socket
//! SSE client (tests/support/sse.rs) and curl (a real process) receive, resume with
//! `Last-Event-ID`, are refused like WebSocket clients, meet the slow-consumer policy
//! and the drain.

mod support;

use std::process::Stdio;

use pushgate_server::config::HistoryConfig;
use pushgate_server::Config;
use serde_json::json;
use support::sse::{open, Event, SseClient};
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};

fn history_config() -> Config {
    Config {
        history: vec![HistoryConfig {
            channels: "chat:*".into(),
            size: 1000,
            ttl_ms: 600_000,
        }],
        ..config()
    }
}

/// Opens a stream and reads `#connected` (and `#subscribed` when it names channels).
async fn stream(gw: &pushgate_server::Gateway, target: &str, headers: &str) -> (SseClient, Event) {
    let mut c = open(gw.ws_addr(), target, headers)
        .await
        .unwrap_or_else(|(s, b)| panic!("{target}: {s} {b}"));
    let hello = c.event().await;
    assert_eq!(hello.event.as_deref(), Some("#connected"), "{hello:?}");
    assert_eq!(hello.json()["type"], "connected");
    let sub = if target.contains("channel=") {
        let s = c.event().await;
        assert_eq!(s.event.as_deref(), Some("#subscribed"), "{s:?}");
        s
    } else {
        hello
    };
    (c, sub)
}

#[tokio::test]
async fn a_stream_receives_channel_user_broadcast_and_binary_publications() {
    let gw = start(config()).await;
    let (mut c, sub) = stream(
        &gw,
        "/sse?channel=news&channel=sport",
        "x-pushgate-user: ann\r\n",
    )
    .await;
    assert_eq!(sub.json()["channels"], json!(["news", "sport"]));
    assert_eq!(sub.id, None, "no history channel, no id");
    // (The recorder is process-wide: other tests' streams count too.)
    assert!(metric(&gw, "pushgate_sse_connections", "").await >= 1.0);

    publish(&gw, "channel=news", "line one\nline two\r\nthree").await;
    let e = c.event().await;
    assert_eq!(e.event.as_deref(), Some("news"));
    assert_eq!(e.data(), "line one\nline two\nthree");
    assert_eq!(e.id, None);

    publish(&gw, "all=true", "to everyone").await;
    let e = c.event().await;
    assert_eq!((e.event.as_deref(), e.data()), (None, "to everyone"));

    publish(&gw, "user=ann", "to ann").await;
    assert_eq!(c.event().await.data(), "to ann");

    let (status, _) = http(
        gw.http_addr(),
        "POST",
        "/publish?channel=sport&binary=true",
        &[0, 1, 255],
    )
    .await;
    assert_eq!(status, 200);
    let e = c.event().await;
    assert_eq!(e.event.as_deref(), Some("#binary"));
    assert_eq!(e.json(), json!({"channel": "sport", "data": "AAH/"}));

    // A WebSocket client beside it gets the same publication as a frame.
    let mut ws = connect(&gw).await;
    subscribe(&mut ws, &["news"]).await;
    publish(&gw, "channel=news", "both").await;
    assert_eq!(c.event().await.data(), "both");
    expect_pub(&mut ws.ws, Some("news"), "both").await;
    assert!(metric(&gw, "pushgate_sse_deliveries_total", "").await >= 5.0);
    drop(c);
    wait_for_stats(&gw, "the stream is gone", |s| s.connections == 1).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn last_event_id_recovers_exactly_the_missed_publications_in_order() {
    let gw = start(history_config()).await;
    let (mut c, sub) = stream(&gw, "/sse?channel=chat:a&channel=chat:b&channel=plain", "").await;
    let seed = sub
        .id
        .clone()
        .expect("history channels give the reply an id");
    assert!(
        seed.starts_with("chat:a:") && seed.contains(",chat:b:"),
        "{seed}"
    );
    for i in 1..=3 {
        publish(&gw, "channel=chat:a", &format!("a{i}")).await;
    }
    publish(&gw, "channel=chat:b", "b1").await;
    let mut last = String::new();
    for want in ["a1", "a2", "a3", "b1"] {
        let e = c.event().await;
        assert_eq!(e.data(), want);
        last = e.id.expect("history publications carry an id");
        // Every id names both history channels.
        assert_eq!(last.split(',').count(), 2, "{last}");
    }
    drop(c);
    wait_for_stats(&gw, "the stream is gone", |s| s.connections == 0).await;
    for i in 4..=6 {
        publish(&gw, "channel=chat:a", &format!("a{i}")).await;
    }
    publish(&gw, "channel=chat:b", "b2").await;
    publish(&gw, "channel=plain", "lost: no history").await;

    let (mut c, sub) = stream(
        &gw,
        "/sse?channel=chat:a&channel=chat:b&channel=plain",
        &format!("Last-Event-ID: {last}\r\n"),
    )
    .await;
    let s = sub.json();
    assert_eq!(s["recovered"], json!(["chat:a", "chat:b"]), "{s}");
    let mut got = Vec::new();
    publish(&gw, "channel=plain", "live").await;
    loop {
        let e = c.event().await;
        if e.data() == "live" {
            break;
        }
        got.push(e.data().to_owned());
    }
    assert_eq!(
        got,
        ["a4", "a5", "a6", "b2"],
        "exactly the missed ones, once, in order"
    );

    // A position of another epoch cannot be resumed: the client is told to reload.
    let (mut c, sub) = stream(
        &gw,
        "/sse?channel=chat:a",
        "Last-Event-ID: chat:a:0123456789abcdef:2\r\n",
    )
    .await;
    assert_eq!(sub.json()["unrecovered"], json!(["chat:a"]));
    let e = c.event().await;
    assert_eq!(e.event.as_deref(), Some("#unrecoverable"));
    assert_eq!(e.json()["channel"], "chat:a");
    assert_eq!(e.json()["offset"], 6);
    // ?since= does the same as the header (a first connection that knows its position).
    let id = sub.id.unwrap();
    let (at, offset) = id.rsplit_once(':').unwrap();
    assert_eq!(offset, "6");
    let since = format!("{at}:4");
    let (mut c, sub) = stream(&gw, &format!("/sse?channel=chat:a&since={since}"), "").await;
    assert_eq!(sub.json()["recovered"], json!(["chat:a"]));
    assert_eq!(c.event().await.data(), "a5");
    assert_eq!(c.event().await.data(), "a6");
    // latest=true: the newest kept publication first.
    let (mut c, _) = stream(&gw, "/sse?channel=chat:b&latest=true", "").await;
    assert_eq!(c.event().await.data(), "b2");
    gw.shutdown().await;
}

#[tokio::test]
async fn refusals_answer_with_an_http_status() {
    let cfg = Config {
        allowed_origins: vec!["https://app.example".into()],
        ..config()
    };
    let gw = start(cfg).await;
    let status = |r: Result<SseClient, (u16, String)>| r.err().map(|e| e.0);
    let a = gw.ws_addr();
    assert_eq!(status(open(a, "/sse?channel=a%20b", "").await), Some(400));
    assert_eq!(
        status(open(a, "/sse?channel=a", "Last-Event-ID: junk\r\n").await),
        Some(400)
    );
    assert_eq!(
        status(open(a, "/sse", "Origin: https://evil.example\r\n").await),
        Some(403)
    );
    let ok = open(a, "/sse", "Origin: https://app.example\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(
        ok.head
            .contains("Access-Control-Allow-Origin: https://app.example"),
        "{}",
        ok.head
    );
    let (s, _) = http_with(a, "OPTIONS", "/sse", "Origin: https://app.example\r\n", b"").await;
    assert_eq!(s, 204);
    let (s, _) = http(a, "POST", "/sse", b"").await;
    assert_eq!(s, 405);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_stream_without_a_valid_token_is_refused_with_401() {
    let cfg = Config {
        auth_mode: pushgate_server::AuthMode::Jwt,
        jwt_hs256_secret: "test-secret-test-secret-test-secret!".into(),
        trusted_user_header: String::new(),
        ..config()
    };
    let gw = start(cfg).await;
    let r = open(gw.ws_addr(), "/sse?channel=news", "").await;
    assert_eq!(r.err().map(|e| e.0), Some(401));
    let r = open(gw.ws_addr(), "/sse?channel=news&token=not.a.jwt", "").await;
    assert_eq!(r.err().map(|e| e.0), Some(401));
    assert!(metric(&gw, "pushgate_handshake_refused_total", "status=\"401\"").await >= 2.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_slow_stream_is_disconnected_while_the_others_keep_receiving() {
    let cfg = Config {
        queue_max_frames: 64,
        queue_max_bytes: 256 * 1024,
        ..config()
    };
    let gw = start(cfg).await;
    // The slow one never reads; the others read everything.
    let (slow, _) = stream(&gw, "/sse?channel=feed", "").await;
    let (mut fast, _) = stream(&gw, "/sse?channel=feed", "").await;
    let mut ws = connect(&gw).await;
    subscribe(&mut ws, &["feed"]).await;
    // 200 × 48 KiB: more than the kernel buffers of a loopback socket that is not read
    // hold, with the 256 KiB queue.
    let body = "x".repeat(48 * 1024);
    let reader = tokio::spawn(async move {
        for i in 0..200 {
            let e = fast.event().await;
            assert!(
                e.data().ends_with(&format!("#{i}")),
                "in order, none missing"
            );
        }
        fast
    });
    let mut n = 0;
    for i in 0..200 {
        let r = publish(&gw, "channel=feed", &format!("{body}#{i}")).await;
        n += r["enqueued"].as_u64().unwrap();
        let m = next_json(&mut ws.ws).await.unwrap();
        assert!(m["data"].as_str().unwrap().ends_with(&format!("#{i}")));
    }
    assert!(
        n < 3 * 200,
        "the slow stream was skipped once disconnected ({n})"
    );
    let _fast = reader.await.unwrap();
    // Counted as a slow consumer once its stream's task has ended (it closes
    // after the publication that found its queue full: not at once).
    wait_for_metric(
        &gw,
        "pushgate_connections_closed_total",
        "reason=\"slow_consumer\"",
        1.0,
    )
    .await;
    drop(slow);
    gw.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_the_stream_with_a_close_event_after_what_was_queued() {
    let gw = start(config()).await;
    let (mut c, _) = stream(&gw, "/sse?channel=news", "").await;
    publish(&gw, "channel=news", "last words").await;
    let stopping = tokio::spawn(gw.shutdown());
    assert_eq!(c.event().await.data(), "last words");
    let e = c.event().await;
    assert_eq!(e.event.as_deref(), Some("#close"));
    assert_eq!(e.json(), json!({"code": 1001, "reason": "shutdown"}));
    assert_eq!(c.next().await, None, "then the response ends");
    stopping.await.unwrap();
}

#[tokio::test]
async fn heartbeats_are_comments() {
    let cfg = Config {
        heartbeat_interval_ms: 50,
        heartbeat_timeout_ms: 10_000,
        ..config()
    };
    let gw = start(cfg).await;
    let (mut c, _) = stream(&gw, "/sse", "").await;
    let e = c.next().await.unwrap();
    assert!(e.comment && e.data.is_none() && e.event.is_none(), "{e:?}");
    // Streams that take their heartbeats are alive: they outlive the timeout.
    gw.shutdown().await;
}

#[tokio::test]
async fn a_stream_whose_socket_stays_full_is_reaped_at_the_heartbeat_timeout() {
    // Queues large enough that the slow-consumer policy does not fire first.
    let cfg = Config {
        heartbeat_interval_ms: 100,
        heartbeat_timeout_ms: 1_000,
        queue_max_frames: 100_000,
        queue_max_bytes: 32 << 20,
        ..config()
    };
    let gw = start(cfg).await;
    let (_stuck, _) = stream(&gw, "/sse?channel=feed", "").await;
    // It never reads again: 200 × 48 KiB fill its socket's kernel buffers, and what is
    // left waits in its queue, so its writer never empties again.
    let body = "x".repeat(48 * 1024);
    for i in 0..200 {
        publish(&gw, "channel=feed", &format!("{body}#{i}")).await;
    }
    wait_for_stats(&gw, "the stuck stream reaped", |s| s.connections == 0).await;
    assert!(
        metric(
            &gw,
            "pushgate_connections_closed_total",
            "reason=\"heartbeat_timeout\""
        )
        .await
            >= 1.0
    );
    gw.shutdown().await;
}

/// curl, a real HTTP client process, follows a stream and resumes with `Last-Event-ID`.
#[tokio::test]
async fn curl_receives_and_resumes_with_last_event_id() {
    let gw = start(history_config()).await;
    let url = format!("http://{}/sse?channel=chat:c", gw.ws_addr());
    let curl = |extra: Vec<String>| {
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-sSN", "--max-time", "20"]).args(extra).arg(&url);
        cmd.stdout(Stdio::piped()).kill_on_drop(true);
        cmd.spawn().expect("curl runs (apt-get install curl)")
    };
    // Reads curl's output until `data: <until>`; returns (the last id, every data line).
    async fn follow(child: &mut tokio::process::Child, until: &str) -> (String, Vec<String>) {
        let out = child.stdout.as_mut().unwrap();
        let mut lines = BufReader::new(out).lines();
        let (mut id, mut data) = (String::new(), Vec::new());
        loop {
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .expect("curl prints in time")
                .unwrap()
                .expect("curl's stream goes on");
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push(v.to_owned());
                if v == until {
                    return (id, data);
                }
            }
        }
    }
    let mut first = curl(Vec::new());
    wait_for_stats(&gw, "curl's stream", |s| s.subscriptions == 1).await;
    publish(&gw, "channel=chat:c", "c1").await;
    publish(&gw, "channel=chat:c", "c2").await;
    let (last, data) = follow(&mut first, "c2").await;
    assert!(data.iter().any(|d| d.contains("\"type\":\"connected\"")));
    assert!(
        last.starts_with("chat:c:") && last.ends_with(":2"),
        "{last}"
    );
    first.kill().await.unwrap();
    wait_for_stats(&gw, "curl gone", |s| s.connections == 0).await;
    publish(&gw, "channel=chat:c", "c3").await;
    publish(&gw, "channel=chat:c", "c4").await;
    let mut second = curl(vec!["-H".into(), format!("Last-Event-ID: {last}")]);
    let (last, data) = follow(&mut second, "c4").await;
    let pubs: Vec<&String> = data.iter().filter(|d| d.starts_with('c')).collect();
    assert_eq!(pubs, ["c3", "c4"]);
    assert!(last.ends_with(":4"), "{last}");
    second.kill().await.unwrap();
    gw.shutdown().await;
}
