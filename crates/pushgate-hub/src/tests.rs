//! Unit tests of the shard logic, with no sockets: connections are registered
//! directly and their queues drained through the handle, as the edge's writer does.

use std::collections::VecDeque;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use pushgate_protocol::{ConnId, Payload};

use crate::{CloseReason, ConnHandle, Hub, HubConfig, Outgoing, Publication, PublishError, Target};

fn hub(shards: usize) -> Hub {
    let hub = Hub::new(HubConfig {
        shards,
        heartbeat_interval: Duration::from_secs(1),
        heartbeat_timeout: Duration::from_secs(3),
        queue_max_frames: 4,
        ..HubConfig::default()
    });
    for s in hub.shards() {
        tokio::spawn(s.clone().run());
    }
    hub
}

fn connect(hub: &Hub, user: Option<&str>) -> ConnHandle {
    let (id, shard) = hub.next_conn();
    shard.register(id, user)
}

/// Drains what the writer would get right now, frame by frame (a run of publications
/// queued as one entry is split into its frames).
fn drain(h: &ConnHandle) -> (Vec<Bytes>, Option<CloseReason>) {
    let mut out = VecDeque::new();
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut frames = Vec::new();
    loop {
        match h.poll_outgoing(&mut cx, &mut out, true) {
            Poll::Ready(Outgoing::Frames) => frames.extend(out.drain(..).flat_map(split_frames)),
            Poll::Ready(Outgoing::Close(r)) => return (frames, Some(r)),
            Poll::Pending => return (frames, None),
        }
    }
}

/// The server's (unmasked, final) WebSocket frames encoded back to back in `buf`;
/// anything else (a dialect's frames, an SSE event) whole.
pub(crate) fn split_frames(buf: Bytes) -> Vec<Bytes> {
    let mut frames = Vec::new();
    let mut rest = buf.clone();
    while rest.len() >= 2 && rest[0] & 0x80 != 0 {
        let (header, len) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (4, u16::from_be_bytes([rest[2], rest[3]]) as usize),
            127 if rest.len() >= 10 => (
                10,
                u64::from_be_bytes(rest[2..10].try_into().unwrap()) as usize,
            ),
            n @ 0..=125 => (2, n as usize),
            _ => break,
        };
        if rest.len() < header + len {
            break;
        }
        frames.push(rest.split_to(header + len));
    }
    if rest.is_empty() {
        frames
    } else {
        vec![buf]
    }
}

/// What one take of the writer gets, entry by entry (a joined run is one entry).
pub(crate) fn entries(h: &ConnHandle) -> VecDeque<Bytes> {
    let mut out = VecDeque::new();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(h.poll_outgoing(&mut cx, &mut out, true).is_ready());
    out
}

/// The texts of text publications' frames.
fn texts(frames: &[Bytes]) -> Vec<String> {
    let text = |f: &Bytes| match pushgate_protocol::envelope::decode_publication(f) {
        Some(Payload::Text(t)) => t,
        other => panic!("not a text publication: {other:?}"),
    };
    frames.iter().map(text).collect()
}

fn text(data: &str) -> Payload {
    Payload::Text(data.into())
}

/// Publishes `data` as text to `target`, excluding nobody.
fn send<'h>(
    hub: &'h Hub,
    target: Target,
    data: &str,
) -> impl std::future::Future<Output = Result<crate::PublishReport, PublishError>> + 'h {
    hub.publish(
        Publication {
            target,
            payload: text(data),
            exclude: None,
        },
        "test",
    )
}

async fn publish(hub: &Hub, target: Target, data: &str) -> u64 {
    send(hub, target, data).await.unwrap().enqueued
}

#[tokio::test]
async fn each_target_kind_reaches_exactly_its_connections() {
    let hub = hub(3);
    let a = connect(&hub, Some("alice"));
    let b = connect(&hub, Some("bob"));
    let c = connect(&hub, None);
    a.subscribe(&["news".into()]).unwrap();
    c.subscribe(&["news".into(), "sport".into()]).unwrap();

    assert_eq!(publish(&hub, Target::All, "all").await, 3);
    assert_eq!(
        publish(&hub, Target::Channels(vec!["news".into()]), "n").await,
        2
    );
    assert_eq!(
        publish(&hub, Target::Users(vec!["bob".into()]), "u").await,
        1
    );
    assert_eq!(
        publish(&hub, Target::Conns(vec![c.id(), ConnId(999)]), "c").await,
        1
    );
    assert_eq!(drain(&a).0.len(), 2);
    assert_eq!(drain(&b).0.len(), 2);
    assert_eq!(drain(&c).0.len(), 3);
}

#[tokio::test]
async fn dropping_a_handle_cleans_every_index() {
    let hub = hub(2);
    let handles: Vec<_> = (0..10)
        .map(|i| connect(&hub, Some(if i % 2 == 0 { "even" } else { "odd" })))
        .collect();
    for h in &handles {
        h.subscribe(&["shared".into(), format!("own{}", h.id().0)])
            .unwrap();
    }
    let s = hub.stats();
    assert_eq!((s.connections, s.channels, s.subscriptions), (10, 11, 20));
    drop(handles);
    let s = hub.stats();
    assert_eq!((s.connections, s.channels, s.subscriptions), (0, 0, 0));
    assert_eq!(
        publish(&hub, Target::Users(vec!["even".into()]), "x").await,
        0
    );
}

#[tokio::test]
async fn subscribing_twice_counts_once_and_the_limit_holds() {
    let hub = Hub::new(HubConfig {
        shards: 1,
        max_subscriptions_per_conn: 2,
        ..HubConfig::default()
    });
    let h = connect(&hub, None);
    h.subscribe(&["a".into(), "a".into()]).unwrap();
    h.subscribe(&["a".into(), "b".into()]).unwrap();
    assert_eq!(hub.stats().subscriptions, 2);
    assert!(h.subscribe(&["c".into()]).is_err());
    h.unsubscribe(&["a".into(), "zzz".into()]);
    assert_eq!(hub.stats().subscriptions, 1);
}

#[tokio::test]
async fn a_full_queue_disconnects_only_the_slow_connection() {
    let hub = hub(1);
    let slow = connect(&hub, None);
    let fast = connect(&hub, None);
    let mut skipped = 0;
    for i in 0..6 {
        let r = hub
            .publish(
                Publication {
                    target: Target::All,
                    payload: text("m"),
                    exclude: None,
                },
                "test",
            )
            .await
            .unwrap();
        skipped += r.skipped;
        if i < 5 {
            drain(&fast); // the fast one keeps up
        }
    }
    assert_eq!(
        skipped, 2,
        "the 5th publication overflowed the slow queue (4 frames); the 6th found it closing"
    );
    assert_eq!(drain(&slow), (vec![], Some(CloseReason::SlowConsumer)));
    assert_eq!(drain(&fast).1, None);
}

#[tokio::test(start_paused = true)]
async fn the_sweep_pings_live_connections_and_reaps_silent_ones() {
    let hub = hub(1);
    let quiet = connect(&hub, None);
    let chatty = connect(&hub, None);
    // Five sweeps (one per second); chatty is heard from between them, quiet never.
    let mut pings = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        chatty.touch();
        tokio::task::yield_now().await;
        let (frames, closed) = drain(&chatty);
        assert_eq!(closed, None);
        pings.extend(frames);
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    let (frames, closed) = drain(&quiet);
    assert_eq!(closed, Some(CloseReason::HeartbeatTimeout));
    assert!(frames.is_empty(), "an abortive close drops queued pings");
    pings.extend(drain(&chatty).0);
    assert_eq!(pings.len(), 5);
    assert!(
        pings.iter().all(|p| p[..] == [0x89, 0x00]),
        "pre-encoded empty pings"
    );
}

#[tokio::test]
async fn shutdown_closes_gracefully_after_queued_frames_and_refuses_new_publications() {
    let hub = hub(2);
    let h = connect(&hub, None);
    publish(&hub, Target::All, "last words").await;
    hub.close_all(CloseReason::Shutdown);
    let (frames, closed) = drain(&h);
    assert_eq!(frames.len(), 1, "queued frame is flushed before the close");
    assert_eq!(closed, Some(CloseReason::Shutdown));
    let refused = hub
        .publish(
            Publication {
                target: Target::All,
                payload: text("late"),
                exclude: None,
            },
            "test",
        )
        .await;
    assert_eq!(refused.unwrap_err(), PublishError::ShuttingDown);
}

#[tokio::test]
async fn server_side_subscribe_and_unsubscribe_by_conn_and_by_user() {
    let hub = Hub::new(HubConfig {
        shards: 3,
        max_subscriptions_per_conn: 2,
        ..HubConfig::default()
    });
    let a1 = connect(&hub, Some("alice"));
    let a2 = connect(&hub, Some("alice"));
    let b = connect(&hub, Some("bob"));
    a2.subscribe(&["x".into(), "y".into()]).unwrap();

    assert_eq!(hub.subscribe_conn(b.id(), &["news".into()]), Some(Ok(())));
    assert_eq!(hub.subscribe_conn(ConnId(999), &["news".into()]), None);
    let r = hub.subscribe_user("alice", &["news".into()]);
    assert_eq!((r.applied, r.refused), (1, 1), "a2 is at its limit");
    assert_eq!(hub.channel_subscribers("news"), 2);
    assert_eq!(hub.stats().subscriptions, 4);

    assert!(hub.unsubscribe_conn(b.id(), &["news".into()]));
    assert!(!hub.unsubscribe_conn(ConnId(999), &["news".into()]));
    assert_eq!(
        hub.unsubscribe_user("alice", &["news".into(), "x".into()]),
        2
    );
    assert_eq!(hub.unsubscribe_user("nobody", &["news".into()]), 0);
    assert_eq!(hub.channel_subscribers("news"), 0);
    assert_eq!(hub.stats().subscriptions, 1, "a2 still follows y");
    let mut ids = vec![a1.id(), a2.id()];
    ids.sort_unstable();
    assert_eq!(hub.user_conns("alice"), ids);
}

#[tokio::test]
async fn disconnect_user_closes_all_of_that_users_connections() {
    let hub = hub(2);
    let a1 = connect(&hub, Some("alice"));
    let a2 = connect(&hub, Some("alice"));
    let b = connect(&hub, Some("bob"));
    assert_eq!(hub.disconnect_user_with("alice", 4002, "bye"), 2);
    assert_eq!(hub.disconnect_user_with("carol", 4002, "bye"), 0);
    assert_eq!(drain(&a1).1, Some(CloseReason::Disconnected));
    assert_eq!(drain(&a2).1, Some(CloseReason::Disconnected));
    assert_eq!(drain(&b).1, None);
}

#[tokio::test]
async fn submitted_publications_keep_their_order_and_report_later() {
    let hub = hub(2);
    let h = connect(&hub, None);
    let mut pending = Vec::new();
    for i in 0..3 {
        let p = Publication {
            target: Target::All,
            payload: text(&i.to_string()),
            exclude: None,
        };
        pending.push(hub.submit(p, "test").await.unwrap());
    }
    for s in pending {
        assert_eq!(s.report().await.unwrap().enqueued, 1);
    }
    assert_eq!(hub.pending_publications(), 0);
    let frames = drain(&h).0;
    let bodies: Vec<_> = frames.iter().map(|f| f[2..].to_vec()).collect();
    assert_eq!(
        bodies,
        ["0", "1", "2"]
            .map(|d| format!(r#"{{"type":"pub","data":"{d}"}}"#).into_bytes())
            .to_vec()
    );
    // A publication to connections of other nodes only involves no shard.
    let none = hub
        .submit(
            Publication {
                target: Target::Conns(vec![]),
                payload: text("x"),
                exclude: None,
            },
            "test",
        )
        .await;
    assert!(none.is_err(), "an empty target is refused");
}

#[tokio::test]
async fn a_publication_is_pending_until_its_shards_take_it_whether_or_not_its_report_is() {
    // Shards that do not run yet: the publication waits in their queues.
    let hub = Hub::new(HubConfig {
        shards: 2,
        ..HubConfig::default()
    });
    let p = Publication {
        target: Target::All,
        payload: text("x"),
        exclude: None,
    };
    // An early answer drops the report unread.
    drop(hub.submit(p, "test").await.unwrap());
    assert_eq!(hub.pending_publications(), 1);
    for s in hub.shards() {
        tokio::spawn(s.clone().run());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hub.pending_publications() != 0 {
        assert!(tokio::time::Instant::now() < deadline, "still pending");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[test]
fn a_connection_entry_stays_small() {
    // Every connection costs one of these in its shard's slab; idle memory depends on it.
    let entry = std::mem::size_of::<crate::shard::Conn>();
    assert!(entry <= 112, "Conn grew to {entry} bytes");
    // The edge's task holds one of these per connection.
    let handle = std::mem::size_of::<ConnHandle>();
    assert!(handle <= 32, "ConnHandle grew to {handle} bytes");
}

#[test]
fn interest_follows_the_first_and_last_local_connection_of_each_key() {
    use crate::Key;
    let hub = Hub::new(HubConfig {
        shards: 4,
        track_interest: true,
        ..HubConfig::default()
    });
    let changes = |hub: &Hub| {
        let mut c = hub.interest().take_changes();
        c.sort();
        c
    };
    let ch = |s: &str| Key::Channel(s.into());
    let user = |s: &str| Key::User(s.into());
    // Enough connections that several shards hold "news" and alice.
    let conns: Vec<ConnHandle> = (0..16).map(|_| connect(&hub, Some("alice"))).collect();
    for c in &conns {
        c.subscribe(&["news".into()]).unwrap();
    }
    assert_eq!(
        changes(&hub),
        vec![(ch("news"), true), (user("alice"), true)]
    );
    let mut conns = conns.into_iter();
    let first = conns.next().unwrap();
    first.unsubscribe(&["news".into()]);
    drop(first);
    assert!(
        changes(&hub).is_empty(),
        "others still follow news and are alice"
    );
    for c in conns {
        drop(c);
    }
    assert_eq!(
        changes(&hub),
        vec![(ch("news"), false), (user("alice"), false)]
    );
    assert!(hub.interest().snapshot().is_empty());
}

#[test]
fn the_channel_observer_sees_a_channel_occupied_once_and_vacated_once_on_one_node() {
    let hub = Hub::new(HubConfig {
        shards: 4,
        ..HubConfig::default()
    });
    let seen = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let s = seen.clone();
    assert!(hub
        .interest()
        .observe_channels(Box::new(move |c, on| s.lock().push((c.to_owned(), on))))
        .is_ok());
    // Several shards hold "news": still one transition each way.
    let conns: Vec<ConnHandle> = (0..16).map(|_| connect(&hub, None)).collect();
    for c in &conns {
        c.subscribe(&["news".into()]).unwrap();
    }
    assert_eq!(*seen.lock(), [("news".to_owned(), true)]);
    let mut conns = conns.into_iter();
    conns.next().unwrap().unsubscribe(&["news".into()]);
    assert_eq!(seen.lock().len(), 1, "15 subscribers left");
    drop(conns);
    assert_eq!(
        *seen.lock(),
        [("news".to_owned(), true), ("news".to_owned(), false)]
    );
}

/// Publications queued together reach a shard as one batch; consecutive ones to all are
/// fanned out connection by connection (`fanout.rs`). Each connection must still get
/// them in publication order, minus the one it is excluded from, with the right counts.
#[tokio::test]
async fn a_batch_mixing_publications_to_all_and_to_a_channel_keeps_each_connection_s_order() {
    let hub = hub(2);
    let conns: Vec<ConnHandle> = (0..4).map(|_| connect(&hub, None)).collect();
    for c in [&conns[0], &conns[2]] {
        c.subscribe(&["news".into()]).unwrap();
    }
    let send = |target: Target, data: &str, exclude: Option<ConnId>| {
        hub.publish(
            Publication {
                target,
                payload: text(data),
                exclude,
            },
            "test",
        )
    };
    // Joined: every job is in the shards' queues before a shard task runs (the test's
    // runtime has one thread), so each shard takes the four as one batch.
    let (a, b, c, d) = tokio::join!(
        send(Target::All, "a", None),
        send(Target::All, "b", Some(conns[1].id())),
        send(Target::Channels(vec!["news".into()]), "c", None),
        send(Target::All, "d", None),
    );
    let counts: Vec<u64> = [a, b, c, d].map(|r| r.unwrap().enqueued).to_vec();
    assert_eq!(counts, [4, 3, 2, 4]);
    let orders: Vec<String> = conns.iter().map(|h| texts(&drain(h).0).concat()).collect();
    assert_eq!(orders, ["abcd", "ad", "abcd", "abd"]);
}

#[tokio::test]
async fn a_run_to_all_is_one_entry_where_it_fits_and_frame_by_frame_where_not() {
    let hub = Hub::new(HubConfig {
        shards: 1,
        queue_max_frames: 3,
        slow_policy: crate::SlowPolicy::DropNewest,
        ..HubConfig::default()
    });
    for s in hub.shards() {
        tokio::spawn(s.clone().run());
    }
    let roomy = connect(&hub, None);
    let nearly_full = connect(&hub, None);
    for data in ["x", "y"] {
        let to = Target::Conns(vec![nearly_full.id()]);
        send(&hub, to, data).await.unwrap();
    }
    // Joined: both are in the shard's queue before its task runs (one-thread runtime).
    let (a, b) = tokio::join!(send(&hub, Target::All, "a"), send(&hub, Target::All, "b"));
    let (a, b) = (a.unwrap(), b.unwrap());
    // `nearly_full` has room for one more frame: "a" is queued and "b" dropped, as
    // they would be one at a time.
    assert_eq!((a.enqueued, a.skipped, b.enqueued, b.skipped), (2, 0, 1, 1));
    let roomy = entries(&roomy);
    assert_eq!(roomy.len(), 1, "the run is one entry");
    assert_eq!(texts(&split_frames(roomy[0].clone())), ["a", "b"]);
    let nearly_full = Vec::from(entries(&nearly_full));
    assert_eq!(nearly_full.len(), 3, "frame by frame");
    assert_eq!(texts(&nearly_full), ["x", "y", "a"]);
}

#[tokio::test]
async fn a_run_to_one_channel_is_one_entry_for_its_subscribers() {
    let hub = hub(1);
    let (a, b, other) = (
        connect(&hub, None),
        connect(&hub, None),
        connect(&hub, None),
    );
    for c in [&a, &b] {
        c.subscribe(&["news".into()]).unwrap();
    }
    other.subscribe(&["sports".into()]).unwrap();
    let news = || Target::Channels(vec!["news".into()]);
    let q = Publication {
        target: news(),
        payload: text("q"),
        exclude: Some(b.id()),
    };
    // Joined: all three are in the shard's queue before its task runs.
    let (p, q, r) = tokio::join!(
        send(&hub, news(), "p"),
        hub.publish(q, "test"),
        send(&hub, news(), "r"),
    );
    let counts = [p, q, r].map(|r| r.unwrap().enqueued);
    assert_eq!(counts, [2, 1, 2]);
    assert_eq!(
        entries(&a).len(),
        1,
        "the run is one entry for a subscriber"
    );
    let got = |h: &ConnHandle| texts(&drain(h).0);
    let (p2, r2) = tokio::join!(send(&hub, news(), "s"), send(&hub, news(), "t"));
    assert_eq!((p2.unwrap().enqueued, r2.unwrap().enqueued), (2, 2));
    assert_eq!(got(&a), ["s", "t"]);
    assert_eq!(
        got(&b),
        ["p", "r", "s", "t"],
        "excluded from q: frame by frame"
    );
    assert!(got(&other).is_empty());
}

#[tokio::test]
async fn compressed_recipients_share_one_compressed_frame_and_others_get_plain() {
    let hub = hub(3);
    let conns: Vec<ConnHandle> = (0..9).map(|_| connect(&hub, None)).collect();
    for (i, c) in conns.iter().enumerate() {
        c.subscribe(&["feed".into()]).unwrap();
        match i % 3 {
            0 => {}
            1 => c.set_deflate(15),
            _ => c.set_deflate(8), // a 256-byte window: too small for this payload
        }
    }
    let data = "{\"price\":101.25,\"sym\":\"ABC\"},".repeat(40);
    for target in [Target::All, Target::Channels(vec!["feed".into()])] {
        assert_eq!(publish(&hub, target, &data).await, 9);
        let frames: Vec<Bytes> = conns.iter().map(|c| drain(c).0.remove(0)).collect();
        let plain = &frames[0];
        let z = &frames[1];
        assert_eq!(z[0] & 0x40, 0x40, "RSV1 on the compressed frame");
        assert!(z.len() < plain.len() / 4);
        // The compressed frame is made once for the publication; the plain one is
        // shared by the recipients of a shard (each shard queues its own copy).
        let mut plain_copies = std::collections::HashSet::new();
        for (i, f) in frames.iter().enumerate() {
            if i % 3 == 1 {
                assert_eq!(
                    f.as_ptr(),
                    z.as_ptr(),
                    "recipient {i}: one compressed frame"
                );
            } else {
                assert_eq!(f, plain, "recipient {i}: the plain frame");
                plain_copies.insert(f.as_ptr());
            }
        }
        assert!(
            plain_copies.len() <= 3,
            "at most one plain frame per shard, got {}",
            plain_copies.len()
        );
        let body = |f: &Bytes| f.slice(if f[1] & 0x7F == 126 { 4 } else { 2 }..);
        let mut out = Vec::new();
        pushgate_protocol::deflate::inflate(&body(z), &mut out, 1 << 16).unwrap();
        assert!(
            out == body(plain),
            "the compressed frame inflates to the plain payload"
        );
    }
}

/// A dialect that tags each publication's frame with the channel it names, and counts
/// how many frames it built.
struct Tagging(std::sync::atomic::AtomicUsize);

impl crate::Dialect for Tagging {
    fn publication(&self, channel: Option<&str>, frame: &Bytes) -> Option<Bytes> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let payload = pushgate_protocol::decode_publication(frame)?;
        let Payload::Text(t) = payload else {
            return None; // binary: no form in the dialect
        };
        Some(Bytes::from(format!("{}|{t}", channel.unwrap_or("-"))))
    }

    fn presence_event(
        &self,
        _: pushgate_protocol::PresenceEvent,
        _: &str,
        _: &pushgate_protocol::PresenceClient,
        _: bool,
    ) -> Option<Bytes> {
        None
    }
}

#[tokio::test]
async fn dialect_connections_get_its_frame_built_once_per_channel() {
    let hub = hub(2);
    let tagging = std::sync::Arc::new(Tagging(Default::default()));
    hub.install_dialect(tagging.clone());
    let ws = connect(&hub, None);
    let dialect: Vec<ConnHandle> = (0..4)
        .map(|_| {
            let (id, shard) = hub.next_conn();
            shard.register_dialect(id)
        })
        .collect();
    assert!(dialect.iter().all(ConnHandle::is_dialect) && !ws.is_dialect());
    ws.subscribe(&["a".into()]).unwrap();
    for d in &dialect {
        d.subscribe_member(&["a".into(), "b".into()], None).unwrap();
    }
    let target = Target::Channels(vec!["a".into(), "b".into()]);
    assert_eq!(publish(&hub, target, "x").await, 9);
    // Two channels with dialect recipients: two frames built, whatever their number.
    assert_eq!(tagging.0.load(std::sync::atomic::Ordering::Relaxed), 2);
    let (frames, _) = drain(&ws);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        pushgate_protocol::decode_publication(&frames[0]),
        Some(text("x"))
    );
    let mut first: Option<Bytes> = None;
    for d in &dialect {
        let (frames, _) = drain(d);
        assert_eq!(frames, [Bytes::from("a|x"), Bytes::from("b|x")]);
        // Shared, not copied: every recipient holds the same bytes.
        match &first {
            None => first = Some(frames[0].clone()),
            Some(f) => assert_eq!(f.as_ptr(), frames[0].as_ptr()),
        }
    }
    // A binary publication has no dialect form: only the WebSocket connection gets it.
    let bin = Publication {
        target: Target::Channels(vec!["a".into()]),
        payload: Payload::Binary(Bytes::from_static(b"\x01")),
        exclude: None,
    };
    assert_eq!(hub.publish(bin, "test").await.unwrap().enqueued, 1);
}
