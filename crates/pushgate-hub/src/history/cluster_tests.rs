//! Positions learnt from a cluster broker, through the whole hub (real shard workers):
//! subscribes wait for the first sync, gaps are filled in order, a new epoch is told
//! `unrecoverable`, and a position beyond what the node has waits, then gives up.

use std::time::Duration;

use pushgate_protocol::{Payload, Position};
use serde_json::{json, Value};

use super::tests::{connect, drain, start_workers, subscribe};
use crate::history::{At, HistoryRule, Snapshot, SnapshotEntry, Synced, AHEAD_WAIT};
use crate::{ConnHandle, Hub, HubConfig, Key};

fn cluster_hub() -> Hub {
    let hub = Hub::new(HubConfig {
        shards: 2,
        track_interest: true,
        positions_from_broker: true,
        history: vec![HistoryRule {
            channels: "chat:*".into(),
            size: 100,
            ttl: Duration::from_secs(600),
        }],
        ..HubConfig::default()
    });
    start_workers(&hub);
    hub
}

/// What the broker does once Redis confirms it follows `ch`: releases held replies.
fn confirm(hub: &Hub, ch: &str) {
    for (conn, frame) in hub.interest().confirm(Key::Channel(ch.into())) {
        hub.send_to(conn, frame);
    }
}

fn pos(epoch: &str, offset: u64) -> Position {
    Position {
        epoch: epoch.into(),
        offset,
    }
}

fn snapshot(epoch: &str, top: u64, offsets: std::ops::RangeInclusive<u64>) -> Snapshot {
    Snapshot {
        epoch: epoch.into(),
        top,
        entries: offsets
            .map(|o| SnapshotEntry {
                offset: o,
                payload: Payload::Text(format!("m{o}")),
                age: Duration::from_millis(10),
            })
            .collect(),
    }
}

async fn at(hub: &Hub, ch: &str, epoch: &str, offset: u64) -> At {
    let data = Payload::Text(format!("m{offset}"));
    hub.submit_at(ch, &pos(epoch, offset), &data, None, "test")
        .await
        .unwrap()
}

async fn sent(hub: &Hub, ch: &str, epoch: &str, offset: u64) {
    match at(hub, ch, epoch, offset).await {
        At::Sent(s) => drop(s.report().await.unwrap()),
        _ => panic!("offset {offset} was not sent"),
    }
}

/// Drains until `n` messages arrived (with a deadline).
async fn messages(h: &ConnHandle, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.len() < n {
        assert!(tokio::time::Instant::now() < deadline, "only {got:?}");
        got.extend(drain(h));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(got.len(), n, "{got:?}");
    got
}

fn offsets(msgs: &[Value]) -> Vec<u64> {
    msgs.iter().filter_map(|m| m["offset"].as_u64()).collect()
}

#[tokio::test]
async fn a_subscribe_waits_for_the_first_sync_and_then_follows_redis_offsets() {
    let hub = cluster_hub();
    let a = connect(&hub);
    subscribe(&a, "chat:1", None, false);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(drain(&a).is_empty(), "no position is known yet");
    let h = hub.history().unwrap();
    assert_eq!(h.take_sync_requests(), vec!["chat:1".into()]);
    assert!(
        hub.interest().wants(&Key::Channel("chat:1".into())),
        "a waiting subscribe keeps its channel followed"
    );
    confirm(&hub, "chat:1");
    // A publication before the sync cannot be placed.
    assert!(matches!(at(&hub, "chat:1", "E", 11).await, At::NeedsSync));

    let r = hub.sync("chat:1", snapshot("E", 10, 6..=10)).await.unwrap();
    assert_eq!(r, Synced::Installed);
    let got = messages(&a, 1).await;
    assert_eq!(
        got[0]["positions"]["chat:1"],
        json!({"epoch": "E", "offset": 10})
    );
    sent(&hub, "chat:1", "E", 11).await;
    assert!(matches!(at(&hub, "chat:1", "E", 11).await, At::Duplicate));
    assert!(matches!(at(&hub, "chat:1", "E", 13).await, At::NeedsSync));
    assert!(matches!(at(&hub, "chat:1", "F", 12).await, At::NeedsSync));
    assert_eq!(offsets(&messages(&a, 1).await), [11]);

    // The synced cache serves resumes.
    let b = connect(&hub);
    subscribe(&b, "chat:1", Some(pos("E", 7)), false);
    let got = messages(&b, 5).await;
    assert_eq!(got[0]["recovered"], json!(["chat:1"]));
    assert_eq!(offsets(&got), [8, 9, 10, 11]);
    // The wait is over: the pin is gone, the index holds the interest.
    drop((a, b));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!hub.interest().wants(&Key::Channel("chat:1".into())));
}

#[tokio::test]
async fn a_gap_is_filled_in_order_before_newer_publications() {
    let hub = cluster_hub();
    confirm(&hub, "chat:g");
    hub.sync("chat:g", snapshot("E", 5, 1..=5)).await.unwrap();
    let a = connect(&hub);
    subscribe(&a, "chat:g", None, false);
    assert_eq!(messages(&a, 1).await[0]["positions"]["chat:g"]["offset"], 5);
    // Offsets 6..8 were missed (an outage); Redis still has them.
    assert!(matches!(at(&hub, "chat:g", "E", 9).await, At::NeedsSync));
    let r = hub.sync("chat:g", snapshot("E", 8, 6..=8)).await.unwrap();
    assert_eq!(r, Synced::Filled(3));
    sent(&hub, "chat:g", "E", 9).await;
    assert_eq!(offsets(&messages(&a, 4).await), [6, 7, 8, 9]);
    let r = hub.sync("chat:g", snapshot("E", 9, 9..=9)).await.unwrap();
    assert_eq!(r, Synced::Unchanged);
}

#[tokio::test]
async fn a_lost_history_tells_subscribers_unrecoverable_and_continues() {
    let hub = cluster_hub();
    confirm(&hub, "chat:r");
    hub.sync("chat:r", snapshot("E1", 5, 1..=5)).await.unwrap();
    let a = connect(&hub);
    subscribe(&a, "chat:r", None, false);
    messages(&a, 1).await;
    // Redis restarted without its data: a new epoch, two publications since.
    let r = hub.sync("chat:r", snapshot("E2", 2, 1..=2)).await.unwrap();
    assert_eq!(r, Synced::Reset);
    sent(&hub, "chat:r", "E2", 3).await;
    let got = messages(&a, 2).await;
    assert_eq!(
        got[0],
        json!({"type": "unrecoverable", "channel": "chat:r", "epoch": "E2", "offset": 2})
    );
    assert_eq!(offsets(&got[1..]), [3]);
    // Positions of the old epoch are unrecovered; the new one resumes.
    let b = connect(&hub);
    subscribe(&b, "chat:r", Some(pos("E1", 4)), false);
    assert_eq!(messages(&b, 1).await[0]["unrecovered"], json!(["chat:r"]));
    let c = connect(&hub);
    subscribe(&c, "chat:r", Some(pos("E2", 1)), false);
    assert_eq!(offsets(&messages(&c, 3).await), [2, 3]);
    // A gap that Redis no longer has is a reset too, in the same epoch.
    let r = hub
        .sync("chat:r", snapshot("E2", 500, 401..=500))
        .await
        .unwrap();
    assert_eq!(r, Synced::Reset);
    assert_eq!(messages(&a, 1).await[0]["type"], "unrecoverable");
}

#[tokio::test(start_paused = true)]
async fn a_position_beyond_the_node_waits_for_it_then_gives_up() {
    let hub = cluster_hub();
    confirm(&hub, "chat:w");
    hub.sync("chat:w", snapshot("E", 10, 1..=10)).await.unwrap();
    // A client saw offset 12 on another node; this one is a little behind.
    let a = connect(&hub);
    subscribe(&a, "chat:w", Some(pos("E", 12)), false);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(drain(&a).is_empty());
    for o in 11..=13 {
        sent(&hub, "chat:w", "E", o).await;
    }
    let got = messages(&a, 2).await;
    assert_eq!(got[0]["recovered"], json!(["chat:w"]));
    assert_eq!(offsets(&got), [13]);
    // A position nobody ever published is unrecovered once the wait is over.
    let b = connect(&hub);
    subscribe(&b, "chat:w", Some(pos("E", 99)), false);
    tokio::time::sleep(AHEAD_WAIT + Duration::from_secs(1)).await;
    let got = messages(&b, 1).await;
    assert_eq!(got[0]["unrecovered"], json!(["chat:w"]));
    assert_eq!(got[0]["positions"]["chat:w"]["offset"], 13);
}

#[tokio::test]
async fn a_stream_no_longer_followed_is_synced_again_before_anyone_resumes_from_it() {
    let hub = cluster_hub();
    confirm(&hub, "chat:s");
    hub.sync("chat:s", snapshot("E", 5, 1..=5)).await.unwrap();
    let a = connect(&hub);
    subscribe(&a, "chat:s", None, false);
    assert_eq!(messages(&a, 1).await[0]["positions"]["chat:s"]["offset"], 5);
    // The node stopped following the channel (say, a subscriber raced the
    // unsubscribe and stayed); Redis moved on meanwhile.
    hub.history().unwrap().unfollowed("chat:s");
    let b = connect(&hub);
    subscribe(&b, "chat:s", None, false);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(drain(&b).is_empty(), "no stale position is given");
    let r = hub.sync("chat:s", snapshot("E", 8, 6..=8)).await.unwrap();
    assert_eq!(r, Synced::Filled(3));
    assert_eq!(offsets(&messages(&a, 3).await), [6, 7, 8]);
    let got = messages(&b, 1).await;
    assert_eq!(got[0]["positions"]["chat:s"]["offset"], 8);
}
