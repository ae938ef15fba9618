//! Webhooks against a real HTTP receiver on 127.0.0.1:0 that fails on purpose.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;
use crate::api::sign;

const WAIT: Duration = Duration::from_secs(10);

/// One request as the receiver saw it.
#[derive(Debug)]
struct Received {
    key: String,
    signature: String,
    body: String,
}

/// A receiver that answers each request with the next status of `script` (200 once
/// the script is used up), and hands every request it read to the returned queue.
async fn receiver(script: Vec<u16>) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut script = script.into_iter();
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            let mut r = BufReader::new(sock);
            let (mut len, mut key, mut signature) = (0, String::new(), String::new());
            loop {
                let mut line = String::new();
                r.read_line(&mut line).await.unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(": ").unwrap_or((line, ""));
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => len = value.parse().unwrap(),
                    "x-pusher-key" => key = value.into(),
                    "x-pusher-signature" => signature = value.into(),
                    _ => {}
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).await.unwrap();
            let status = script.next().unwrap_or(200);
            let _ = tx.send(Received {
                key,
                signature,
                body: String::from_utf8(body).unwrap(),
            });
            let resp =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            r.get_mut().write_all(resp.as_bytes()).await.unwrap();
        }
    });
    (url, rx)
}

fn apps(url: &str, events: &[&str]) -> PusherApps {
    PusherApps::new(vec![PusherApp {
        id: "1".into(),
        key: "key".into(),
        secret: "secret".into(),
        webhook_url: url.into(),
        webhook_events: events.iter().map(|e| e.to_string()).collect(),
        ..PusherApp::default()
    }])
    .unwrap()
}

const FAST: Backoff = Backoff {
    base: Duration::from_millis(1),
    cap: Duration::from_millis(4),
    attempts: 3,
};

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn a_batch_is_signed_and_retried_until_accepted() {
    let (url, mut rx) = receiver(vec![500, 503]).await;
    let stop = CancellationToken::new();
    let hooks = Webhooks::start(&apps(&url, &[]), FAST, &stop).unwrap();
    // Queued before the sender task first runs (this runtime has one thread): one batch.
    hooks.channel_occupied("1", "news");
    hooks.member_added("1", "presence-room", "alice");
    hooks.client_event("1", "private-c", "client-x", "{}", "1.2", None);
    let first = next(&mut rx).await;
    let (second, third) = (next(&mut rx).await, next(&mut rx).await);
    for r in [&first, &second, &third] {
        assert_eq!(r.key, "key");
        assert_eq!(
            r.signature,
            sign("secret", &r.body),
            "signed over the exact body"
        );
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert!(v["time_ms"].as_u64().unwrap() > 1_600_000_000_000);
        let names: Vec<&str> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["channel_occupied", "member_added", "client_event"]);
    }
    // Accepted at the third attempt: nothing more is sent for that batch.
    hooks.channel_vacated("1", "news");
    let fourth = next(&mut rx).await;
    assert!(fourth.body.contains("channel_vacated"));
    assert!(!fourth.body.contains("channel_occupied"));
    stop.cancel();
}

#[tokio::test]
async fn a_batch_is_dropped_after_its_last_attempt() {
    let (url, mut rx) = receiver(vec![500, 500, 500]).await;
    let stop = CancellationToken::new();
    let hooks = Webhooks::start(&apps(&url, &[]), FAST, &stop).unwrap();
    hooks.channel_occupied("1", "a");
    for _ in 0..FAST.attempts {
        assert!(next(&mut rx).await.body.contains("\"a\""));
    }
    hooks.channel_occupied("1", "b");
    let after = next(&mut rx).await;
    assert!(after.body.contains("\"b\"") && !after.body.contains("\"a\""));
    stop.cancel();
}

#[tokio::test]
async fn only_wanted_events_are_queued_and_a_full_queue_drops() {
    let (url, _rx) = receiver(vec![]).await;
    let stop = CancellationToken::new();
    let hooks = Webhooks::start(&apps(&url, &["channel_vacated"]), FAST, &stop).unwrap();
    let occ = || WebhookEvent::ChannelOccupied {
        channel: "c".into(),
    };
    let vac = || WebhookEvent::ChannelVacated {
        channel: "c".into(),
    };
    assert_eq!(hooks.send("1", occ()), Queued::NotWanted);
    assert_eq!(hooks.send("2", vac()), Queued::NotWanted, "unknown app");
    // The sender task has not run yet (one-thread runtime): the queue fills.
    for _ in 0..QUEUE {
        assert_eq!(hooks.send("1", vac()), Queued::Yes);
    }
    assert_eq!(hooks.send("1", vac()), Queued::Dropped);
    stop.cancel();
}

#[test]
fn urls_must_be_plain_http_with_a_host() {
    let app = |url: &str| PusherApp {
        id: "1".into(),
        webhook_url: url.into(),
        ..PusherApp::default()
    };
    assert!(parse_url(&app("http://127.0.0.1:9/x")).is_ok());
    for bad in ["https://example.com/", "ftp://x/", "not a url", "/relative"] {
        assert!(parse_url(&app(bad)).is_err(), "{bad}");
    }
}

#[test]
fn batches_take_what_is_queued_up_to_the_limit() {
    let (tx, mut rx) = mpsc::channel(MAX_BATCH * 2);
    let e = |i: usize| WebhookEvent::ChannelOccupied {
        channel: format!("c{i}"),
    };
    for i in 1..MAX_BATCH + 5 {
        tx.try_send(e(i)).unwrap();
    }
    assert_eq!(take_batch(e(0), &mut rx).len(), MAX_BATCH);
    assert_eq!(
        take_batch(e(0), &mut rx).len(),
        6,
        "the first and the 5 left"
    );
    assert_eq!(
        body(7, &[e(1)]),
        r#"{"time_ms":7,"events":[{"name":"channel_occupied","channel":"c1"}]}"#
    );
}

#[tokio::test]
async fn only_apps_that_send_channel_events_are_tracked_cluster_wide() {
    let stop = CancellationToken::new();
    let url = "http://127.0.0.1:9/hook";
    let tracked = |events: &[&str]| {
        Webhooks::start(&apps(url, events), FAST, &stop)
            .unwrap()
            .occupancy_apps()
    };
    assert_eq!(tracked(&[]), ["1"], "every event");
    assert_eq!(tracked(&["channel_vacated"]), ["1"]);
    assert_eq!(tracked(&["member_added", "channel_occupied"]), ["1"]);
    assert!(tracked(&["member_added", "client_event"]).is_empty());
    let none = Webhooks::start(&PusherApps::new(vec![]).unwrap(), FAST, &stop).unwrap();
    assert!(none.occupancy_apps().is_empty(), "no webhook_url");
    stop.cancel();
}
