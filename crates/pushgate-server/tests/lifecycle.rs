//! Heartbeats, slow consumers, cleanup and shutdown.

mod support;

use std::time::Duration;

use futures_util::SinkExt;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn a_silent_client_is_reaped_with_4001_and_removed_everywhere() {
    let mut cfg = config();
    cfg.heartbeat_interval_ms = 50;
    cfg.heartbeat_timeout_ms = 300;
    let gw = start(cfg).await;
    // A well-behaved client answers pings (tungstenite does it while it reads) and stays.
    let mut alive = connect(&gw).await;
    subscribe(&mut alive, &["ch"]).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let alive_reader = tokio::spawn(async move {
        while let Ok(m) = next_json(&mut alive.ws).await {
            if tx.send(m).is_err() {
                break;
            }
        }
    });
    // A raw client completes the handshake, subscribes, then never answers anything.
    let mut silent = raw_upgrade(gw.ws_addr()).await;
    silent
        .write_all(&client_frame(
            1,
            br#"{"type":"subscribe","channels":["ch","other"]}"#,
        ))
        .await
        .unwrap();
    wait_for_stats(&gw, "both subscribed", |s| s.subscriptions == 3).await;

    assert_eq!(read_until_close(&mut silent).await, Some(4001));
    wait_for_stats(&gw, "silent client removed", |s| {
        s.connections == 1 && s.subscriptions == 1 && s.channels == 1
    })
    .await;
    // Meanwhile the live client kept answering pings and still gets publications.
    publish(&gw, "channel=ch", "still here").await;
    let m = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (m["channel"].as_str(), m["data"].as_str()),
        (Some("ch"), Some("still here")),
        "{m}"
    );
    gw.shutdown().await;
    alive_reader.abort();
}

#[tokio::test]
async fn a_client_that_never_reads_is_disconnected_and_others_get_everything() {
    let mut cfg = config();
    cfg.queue_max_frames = 64;
    cfg.queue_max_bytes = 256 * 1024;
    cfg.max_payload_bytes = 32 * 1024;
    let gw = start(cfg).await;
    let mut healthy = connect(&gw).await;
    // Never reads: the kernel buffers fill, then its queue, then the policy applies.
    let _stuck = raw_upgrade(gw.ws_addr()).await;
    wait_for_stats(&gw, "two connections", |s| s.connections == 2).await;

    let payload = "x".repeat(30 * 1024);
    let total = 600; // ~18 MB: far more than loopback socket buffers hold
    let reader = tokio::spawn(async move {
        for i in 0..total {
            let m = next_json(&mut healthy.ws).await.unwrap();
            assert_eq!(m["type"], "pub", "message {i}");
            assert_eq!(m["data"].as_str().unwrap().len(), 30 * 1024);
        }
        healthy
    });
    let mut skipped = 0;
    for _ in 0..total {
        let r = publish(&gw, "all=true", &payload).await;
        skipped += r["skipped"].as_u64().unwrap();
    }
    let mut healthy = reader.await.unwrap();
    assert!(skipped >= 1, "the stuck client was skipped at least once");
    wait_for_stats(&gw, "stuck client disconnected", |s| s.connections == 1).await;
    let slow = metric(&gw, "pushgate_slow_consumer_disconnects_total", "").await;
    assert!(slow >= 1.0, "slow-consumer disconnect counted");
    publish(&gw, "all=true", "after").await;
    expect_pub(&mut healthy.ws, None, "after").await;
    gw.shutdown().await;
}

#[tokio::test]
async fn client_close_is_answered_with_the_same_code() {
    let gw = start(config()).await;
    let mut c = connect(&gw).await;
    c.ws.send(Message::Close(Some(
        tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 3000.into(),
            reason: "bye".into(),
        },
    )))
    .await
    .unwrap();
    loop {
        match next_msg(&mut c.ws).await {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 3000);
                break;
            }
            Ok(Message::Close(None)) => panic!("close without code"),
            Ok(_) => continue,
            Err(e) => panic!("no close reply: {e}"),
        }
    }
    wait_for_stats(&gw, "closed", |s| s.connections == 0).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn shutdown_flushes_queued_publications_then_closes_with_1001() {
    let gw = start(config()).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&gw).await);
    }
    for i in 0..50 {
        publish(&gw, "all=true", &format!("m{i}")).await;
    }
    let addr = gw.http_addr();
    let stopping = tokio::spawn(gw.shutdown());
    for c in &mut clients {
        for i in 0..50 {
            expect_pub(&mut c.ws, None, &format!("m{i}")).await;
        }
        match next_msg(&mut c.ws).await.unwrap() {
            Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001),
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "internal API stopped"
    );
}

#[tokio::test]
async fn drain_delivers_everything_then_closes_clients_spread_over_the_window() {
    let mut cfg = config();
    cfg.drain_window_ms = 1_000;
    cfg.shutdown_grace_ms = 5_000;
    let gw = start(cfg).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(connect(&gw).await);
    }
    for i in 0..10 {
        publish(&gw, "all=true", &format!("before drain {i}")).await;
    }
    let api = gw.http_addr();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                for i in 0..10 {
                    expect_pub(&mut c.ws, None, &format!("before drain {i}")).await;
                }
                match next_msg(&mut c.ws).await.unwrap() {
                    Message::Close(Some(f)) => assert_eq!(u16::from(f.code), 1001),
                    other => panic!("expected close 1001, got {other:?}"),
                }
                tokio::time::Instant::now()
            })
        })
        .collect();
    let stopping = tokio::spawn(gw.shutdown());
    // Not ready as soon as the drain starts (the API keeps answering during it).
    let deadline = tokio::time::Instant::now() + WAIT;
    while http(api, "GET", "/readyz", b"").await.0 != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never went 503"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut closed_at = Vec::new();
    for r in readers {
        closed_at.push(r.await.unwrap());
    }
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
    let first = *closed_at.iter().min().unwrap();
    let last = *closed_at.iter().max().unwrap();
    // Scheduled evenly over 1 s: all within one burst would mean no spreading at all.
    assert!(
        last - first >= Duration::from_millis(250),
        "closes spread over {:?}",
        last - first
    );
}
