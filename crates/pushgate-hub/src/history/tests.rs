//! Recovery through the whole hub: real shard workers, publishers running while
//! subscribers resume, offsets checked for gaps and duplicates.

use std::collections::VecDeque;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use pushgate_protocol::{Payload, Position};
use serde_json::Value;

use crate::history::{HistoryRule, SubscribeRequest, Subscribed};
use crate::{ConnHandle, Hub, HubConfig, Outgoing, Publication, SubscribeError, Target};

fn hub_with(shards: usize, size: usize, start: bool) -> Hub {
    let hub = Hub::new(HubConfig {
        shards,
        queue_max_frames: 100_000,
        queue_max_bytes: u32::MAX as usize,
        history: vec![HistoryRule {
            channels: "chat:*".into(),
            size,
            ttl: Duration::from_secs(600),
        }],
        ..HubConfig::default()
    });
    if start {
        start_workers(&hub);
    }
    hub
}

pub(super) fn start_workers(hub: &Hub) {
    for s in hub.shards() {
        tokio::spawn(s.clone().run());
    }
}

pub(super) fn connect(hub: &Hub) -> ConnHandle {
    let (id, shard) = hub.next_conn();
    shard.register(id, None)
}

/// A reply builder that renders the outcome as JSON, as the edge does.
pub(super) fn reply() -> crate::history::ReplyFn {
    Box::new(|o: Result<&Subscribed, &SubscribeError>| {
        let v = match o {
            Ok(s) => serde_json::json!({
                "type": "subscribed",
                "positions": s.positions.iter().map(|(c, p)| (c.clone(), serde_json::json!({"epoch": p.epoch, "offset": p.offset}))).collect::<serde_json::Map<_, _>>(),
                "recovered": s.recovered,
                "unrecovered": s.unrecovered,
            }),
            Err(e) => serde_json::json!({"type": "error", "code": e.code()}),
        };
        pushgate_protocol::encode_frame(pushgate_protocol::OpCode::Text, v.to_string().as_bytes())
    })
}

pub(super) fn subscribe(h: &ConnHandle, ch: &str, since: Option<Position>, latest: bool) {
    let req = SubscribeRequest {
        channels: vec![ch.into()],
        since: since.map(|p| vec![(ch.to_string(), p)]).unwrap_or_default(),
        latest,
        presence_events: false,
    };
    h.subscribe_with(req, reply()).unwrap();
}

/// Everything queued for the connection now, as JSON.
pub(crate) fn drain(h: &ConnHandle) -> Vec<Value> {
    let mut out = VecDeque::new();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut got = Vec::new();
    while let Poll::Ready(Outgoing::Frames) = h.poll_outgoing(&mut cx, &mut out, true) {
        // A run to one channel is one entry of frames back to back.
        let frames = out.drain(..).flat_map(crate::tests::split_frames);
        got.extend(frames.map(|f: Bytes| {
            let at = match f[1] {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            serde_json::from_slice(&f[at..]).unwrap()
        }));
    }
    got
}

async fn publish(hub: &Hub, ch: &str, data: String) -> Position {
    let (pos, s) = submit(hub, ch, data).await;
    s.report().await.unwrap();
    pos
}

/// Hands a publication to the shards without waiting for them.
async fn submit(hub: &Hub, ch: &str, data: String) -> (Position, crate::Submitted) {
    let mut s = hub
        .submit(
            Publication {
                target: Target::Channels(vec![ch.into()]),
                payload: Payload::Text(data),
                exclude: None,
            },
            "test",
        )
        .await
        .unwrap();
    (s.take_positions().remove(0).1, s)
}

/// Drains until the offset `last` arrives (with a deadline), returning the
/// publications' offsets and the other messages.
pub(super) async fn collect_until(h: &ConnHandle, last: u64) -> (Vec<u64>, Vec<Value>) {
    let (mut offsets, mut other) = (Vec::new(), Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while offsets.last() != Some(&last) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "offset {last} never arrived; got {offsets:?}"
        );
        for m in drain(h) {
            match m["type"].as_str() {
                Some("pub") => offsets.push(m["offset"].as_u64().unwrap()),
                _ => other.push(m),
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (offsets, other)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resuming_while_publishing_gets_every_offset_exactly_once() {
    let hub = hub_with(4, 10_000, true);
    const N: u64 = 3000;
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 1..=N {
                publish(&hub, "chat:1", format!("m{i}")).await;
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // Clients join, read a while, leave, and resume on new connections (other shards)
    // from the last offset they saw, as a reconnecting client does.
    let mut clients = Vec::new();
    for k in 0..8u64 {
        let hub = hub.clone();
        clients.push(tokio::spawn(async move {
            let mut h = connect(&hub);
            subscribe(&h, "chat:1", None, false);
            let mut seen: Vec<u64> = Vec::new();
            let mut epoch = String::new();
            let mut base = None;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            let mut hops = 0;
            while seen.last() != Some(&N) {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "client {k} stuck at {:?}",
                    seen.last()
                );
                for m in drain(&h) {
                    match m["type"].as_str() {
                        Some("pub") => seen.push(m["offset"].as_u64().unwrap()),
                        Some("subscribed") => {
                            let p = &m["positions"]["chat:1"];
                            epoch = p["epoch"].as_str().unwrap().to_owned();
                            base.get_or_insert(p["offset"].as_u64().unwrap());
                            assert_eq!(m["unrecovered"], serde_json::json!([]), "{m}");
                        }
                        _ => panic!("{m}"),
                    }
                }
                if seen.len() > (hops + 1) * (100 + k as usize * 37) && hops < 5 {
                    hops += 1;
                    let last = *seen.last().unwrap();
                    h = connect(&hub);
                    subscribe(
                        &h,
                        "chat:1",
                        Some(Position {
                            epoch: epoch.clone(),
                            offset: last,
                        }),
                        false,
                    );
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let base = base.unwrap();
            let want: Vec<u64> = (base + 1..=N).collect();
            assert_eq!(seen.len(), want.len(), "client {k}: count (hops {hops})");
            assert_eq!(seen, want, "client {k}: gaps or duplicates");
            hops
        }));
    }
    publisher.await.unwrap();
    let mut hops = 0;
    for c in clients {
        hops += c.await.unwrap();
    }
    assert!(hops >= 8, "the clients did resume ({hops} times)");
}

#[tokio::test]
async fn a_position_ahead_of_the_shard_waits_for_it() {
    // Workers not started: publications stay in the shards' queues.
    let hub = hub_with(2, 100, false);
    let mut last = None;
    for i in 1..=5 {
        last = Some(submit(&hub, "chat:w", format!("m{i}")).await.0);
    }
    let last = last.unwrap();
    let p3 = Position {
        epoch: last.epoch.clone(),
        offset: 3,
    };
    let h = connect(&hub);
    subscribe(&h, "chat:w", Some(p3), false);
    assert!(drain(&h).is_empty(), "nothing before the shard caught up");
    start_workers(&hub);
    let (offsets, other) = collect_until(&h, 5).await;
    assert_eq!(offsets, [4, 5]);
    assert_eq!(
        other[0]["recovered"],
        serde_json::json!(["chat:w"]),
        "{other:?}"
    );
    assert_eq!(other[0]["positions"]["chat:w"]["offset"], 5);
}

#[tokio::test]
async fn unrecoverable_positions_are_said_so_and_latest_sends_the_newest() {
    let hub = hub_with(2, 10, true);
    let mut last = None;
    for i in 1..=50 {
        last = Some(publish(&hub, "chat:u", format!("m{i}")).await);
    }
    let epoch = last.unwrap().epoch;
    for (since, why) in [
        (
            Position {
                epoch: "other".into(),
                offset: 45,
            },
            "another epoch",
        ),
        (
            Position {
                epoch: epoch.clone(),
                offset: 5,
            },
            "out of the window",
        ),
        (
            Position {
                epoch: epoch.clone(),
                offset: 51,
            },
            "never published",
        ),
    ] {
        let h = connect(&hub);
        subscribe(&h, "chat:u", Some(since), false);
        let got = drain(&h);
        assert_eq!(got.len(), 1, "{why}: {got:?}");
        assert_eq!(
            got[0]["unrecovered"],
            serde_json::json!(["chat:u"]),
            "{why}"
        );
        assert_eq!(got[0]["positions"]["chat:u"]["offset"], 50, "{why}");
    }
    let h = connect(&hub);
    subscribe(
        &h,
        "chat:u",
        Some(Position {
            epoch: epoch.clone(),
            offset: 40,
        }),
        false,
    );
    let got = drain(&h);
    assert_eq!(got[0]["recovered"], serde_json::json!(["chat:u"]));
    let offs: Vec<u64> = got[1..]
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offs, (41..=50).collect::<Vec<_>>());
    assert_eq!(got[1]["data"], "m41");

    let h = connect(&hub);
    subscribe(&h, "chat:u", None, true);
    let got = drain(&h);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["data"], "m50");
    // A channel without a rule: no positions, `since` ignored.
    let h = connect(&hub);
    subscribe(
        &h,
        "news",
        Some(Position {
            epoch: "x".into(),
            offset: 1,
        }),
        true,
    );
    let got = drain(&h);
    assert_eq!(
        got,
        [
            serde_json::json!({"type": "subscribed", "positions": {}, "recovered": [], "unrecovered": []})
        ]
    );
}

#[tokio::test]
async fn memory_is_bounded_and_idle_streams_go_first() {
    let hub = Hub::new(HubConfig {
        shards: 2,
        history: vec![HistoryRule {
            channels: "*".into(),
            size: 1000,
            ttl: Duration::from_secs(600),
        }],
        history_max_bytes: 1 << 20,
        ..HubConfig::default()
    });
    start_workers(&hub);
    let followed = connect(&hub);
    subscribe(&followed, "keep", None, false);
    let body = "x".repeat(1000);
    for i in 0..3000 {
        publish(&hub, &format!("c{}", i % 300), body.clone()).await;
        if i % 10 == 0 {
            publish(&hub, "keep", body.clone()).await;
        }
    }
    let h = hub.history().unwrap();
    assert!(h.bytes() <= 1 << 20, "{} bytes kept", h.bytes());
    // The followed stream kept its position (its subscriber received everything).
    let page = h.read("keep", None, 10).unwrap();
    assert_eq!(page.offset, 300);
    let got = drain(&followed);
    assert_eq!(got.len(), 301);
}

#[tokio::test]
async fn a_run_to_a_history_channel_is_one_entry_with_every_offset() {
    use crate::tests::{entries, split_frames};
    // Workers not started: the three publications are fanned out as one run.
    let hub = hub_with(1, 100, false);
    let ws = connect(&hub);
    subscribe(&ws, "chat:r", None, false);
    let (id, shard) = hub.next_conn();
    let sse = shard.register_sse(id, None, None);
    subscribe(&sse, "chat:r", None, false);
    assert_eq!(drain(&ws)[0]["type"], "subscribed");
    assert_eq!(entries(&sse).len(), 1, "the subscribe reply");
    let mut reports = Vec::new();
    let mut epoch = String::new();
    for i in 1..=3 {
        let (p, s) = submit(&hub, "chat:r", format!("m{i}")).await;
        assert_eq!(p.offset, i);
        epoch = p.epoch;
        reports.push(s);
    }
    start_workers(&hub);
    for s in reports {
        assert_eq!(s.report().await.unwrap().enqueued, 2);
    }
    let run = entries(&ws);
    assert_eq!(run.len(), 1, "one entry for the run");
    let frames = split_frames(run[0].clone());
    let offsets: Vec<u64> = frames
        .iter()
        .map(|f| {
            serde_json::from_slice::<Value>(&f[2..]).unwrap()["offset"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(offsets, [1, 2, 3]);
    // An SSE stream gets an event per publication, each with its position as its id.
    let events = entries(&sse);
    assert_eq!(events.len(), 3);
    for (i, e) in events.iter().enumerate() {
        let id = format!("id: chat:r:{epoch}:{}\n", i + 1);
        assert!(
            std::str::from_utf8(e).unwrap().contains(&id),
            "{id:?} in {e:?}"
        );
    }
    // The shard knows the run's last offset: a resume from 1 gets 2 and 3 at once.
    let late = connect(&hub);
    let p1 = Position { epoch, offset: 1 };
    subscribe(&late, "chat:r", Some(p1), false);
    let (offsets, other) = collect_until(&late, 3).await;
    assert_eq!(offsets, [2, 3]);
    assert_eq!(other[0]["recovered"], serde_json::json!(["chat:r"]));
}
