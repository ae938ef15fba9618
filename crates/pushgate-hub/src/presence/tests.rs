use super::*;
use crate::{Hub, HubConfig};

fn hub() -> Hub {
    let hub = Hub::new(HubConfig {
        shards: 2,
        presence: vec![PresenceRule {
            channels: "room:*".into(),
        }],
        ..HubConfig::default()
    });
    for s in hub.shards() {
        tokio::spawn(s.clone().run());
    }
    tokio::spawn(hub.presence().unwrap().clone().run(hub.clone()));
    hub
}

#[tokio::test]
async fn members_join_and_leave_with_their_user_and_only_under_a_rule() {
    let hub = hub();
    let p = hub.presence().unwrap().clone();
    let (a, sa) = hub.next_conn();
    let ha = sa.register(a, Some("alice"));
    let (b, sb) = hub.next_conn();
    let hb = sb.register(b, None);
    ha.subscribe(&["room:1".into(), "news".into()]).unwrap();
    hb.subscribe(&["room:1".into()]).unwrap();
    let local = p.local("room:1", "n1");
    assert_eq!(local.len(), 2);
    assert_eq!(local[0].user.as_deref(), Some("alice"));
    assert_eq!(local[1].user, None);
    assert!(p.local("news", "n1").is_empty(), "no rule, no room");
    assert_eq!(
        p.read("news", "n1").await,
        Err(PresenceError::NoRule("news".into()))
    );
    ha.unsubscribe(&["room:1".into()]);
    assert_eq!(p.read("room:1", "n1").await.unwrap().len(), 1);
    drop(hb);
    assert!(p.local("room:1", "n1").is_empty());
    assert!(p.local_rooms().is_empty(), "an empty room is removed");
}

#[test]
fn no_rules_no_presence() {
    let hub = Hub::new(HubConfig {
        shards: 1,
        ..HubConfig::default()
    });
    assert!(hub.presence().is_none());
}

#[tokio::test]
async fn watchers_get_join_and_leave_of_others_and_others_do_not() {
    let hub = hub();
    let (a, sa) = hub.next_conn();
    let watcher = sa.register(a, Some("w"));
    let req = crate::SubscribeRequest {
        channels: vec!["room:1".into()],
        presence_events: true,
        ..Default::default()
    };
    watcher
        .subscribe_with(req, Box::new(|_| bytes::Bytes::from_static(b"\x81\x02{}")))
        .unwrap();
    let (b, sb) = hub.next_conn();
    let quiet = sb.register(b, None);
    quiet.subscribe(&["room:1".into()]).unwrap();
    let (c, sc) = hub.next_conn();
    let other = sc.register(c, Some("carol"));
    other.subscribe(&["room:1".into()]).unwrap();
    other.unsubscribe(&["room:1".into()]);
    // Events are sent by the task: wait for the last one.
    let want = [
        ("join", format!("n1-{}", b.0), None),
        ("join", format!("n1-{}", c.0), Some("carol")),
        ("leave", format!("n1-{}", c.0), Some("carol")),
    ];
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while got.len() < 1 + want.len() && tokio::time::Instant::now() < deadline {
        got.extend(crate::history::tests::drain(&watcher));
        tokio::task::yield_now().await;
    }
    assert_eq!(got.len(), 1 + want.len(), "{got:?}");
    for (v, (kind, conn, user)) in got[1..].iter().zip(want) {
        assert_eq!(v["type"], kind);
        assert_eq!(v["channel"], "room:1");
        assert_eq!(v["conn"], conn.as_str());
        assert_eq!(v["user"].as_str(), user);
    }
    assert!(
        crate::history::tests::drain(&quiet).is_empty(),
        "did not ask"
    );
}

/// A dialect whose member events are `{"member":"join"|"leave","user":…}` frames, and
/// that records its `user_edge` hook's calls.
#[derive(Default)]
struct Members(parking_lot::Mutex<Vec<(String, String, bool)>>);

impl crate::Dialect for Members {
    fn publication(&self, _: Option<&str>, _: &bytes::Bytes) -> Option<bytes::Bytes> {
        None
    }

    fn presence_event(
        &self,
        kind: pushgate_protocol::PresenceEvent,
        _: &str,
        client: &PresenceClient,
        user_edge: bool,
    ) -> Option<bytes::Bytes> {
        let kind = match kind {
            pushgate_protocol::PresenceEvent::Join => "join",
            pushgate_protocol::PresenceEvent::Leave => "leave",
        };
        let v = serde_json::json!({"member": kind, "user": client.user});
        user_edge.then(|| bytes::Bytes::from([&b"\x81\x00"[..], v.to_string().as_bytes()].concat()))
    }

    fn user_edge(&self, channel: &str, user: &str, joined: bool) {
        self.0.lock().push((channel.into(), user.into(), joined));
    }
}

/// A cluster that records the changes it is told.
#[derive(Default)]
struct Recorded(parking_lot::Mutex<Vec<Change>>);

impl PresenceCluster for Recorded {
    fn changed(&self, change: &Change) {
        self.0.lock().push(change.clone());
    }

    fn read(&self, _: String) -> BoxFuture<Result<Vec<PresenceClient>, PresenceError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// Frames the dialect watcher `h` gets within a few yields (the events task runs on
/// this test's runtime).
async fn settle(h: &crate::ConnHandle) -> Vec<serde_json::Value> {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    crate::history::tests::drain(h)
}

#[tokio::test]
async fn one_node_judges_a_users_edges_and_a_cluster_judges_them_instead() {
    for clustered in [false, true] {
        let hub = hub();
        let members = std::sync::Arc::new(Members::default());
        hub.install_dialect(members.clone());
        let p = hub.presence().unwrap().clone();
        let recorded = std::sync::Arc::new(Recorded::default());
        if clustered {
            p.install(recorded.clone());
        }
        let conn = |user: &str| {
            let (id, shard) = hub.next_conn();
            let h = shard.register_dialect(id);
            h.subscribe_member(&["room:1".into()], Some((user, None)))
                .unwrap();
            h
        };
        let w = conn("w");
        let (u1, u2) = (conn("u"), conn("u"));
        drop(u1);
        drop(u2);
        let got = settle(&w).await;
        let hooks = members.0.lock().clone();
        if !clustered {
            // u's first join and last leave, node-wide.
            let users: Vec<_> = got
                .iter()
                .map(|v| (v["member"].clone(), v["user"].clone()))
                .collect();
            assert_eq!(
                users,
                [("join".into(), "u".into()), ("leave".into(), "u".into())],
                "{got:?}"
            );
            let hook = |u: &str, joined| ("room:1".to_owned(), u.to_owned(), joined);
            assert_eq!(hooks, [hook("w", true), hook("u", true), hook("u", false)]);
            continue;
        }
        // Clustered: nothing judged here; the cluster was told every change.
        assert!(got.is_empty() && hooks.is_empty(), "{got:?} {hooks:?}");
        assert_eq!(recorded.0.lock().len(), 5);
        // The cluster's announcements: an edge is sent (not to the connection it is
        // about), a change that is no edge is not, and its hook is called when told.
        let client = PresenceClient {
            conn: "n2-9".into(),
            user: Some("v".into()),
            info: None,
        };
        let a = |user_edge, own| Announced {
            kind: pushgate_protocol::PresenceEvent::Join,
            channel: "room:1",
            client: &client,
            own,
            user_edge: Some(user_edge),
            swept: false,
        };
        p.announce(&hub, &a(false, None));
        p.announce(&hub, &a(true, Some(w.id())));
        assert!(settle(&w).await.is_empty());
        p.announce(&hub, &a(true, None));
        let got = settle(&w).await;
        assert_eq!((got.len(), &got[0]["user"]), (1, &serde_json::json!("v")));
        p.cluster_edge(&hub, "room:1", "v", true);
        assert_eq!(*members.0.lock(), [("room:1".into(), "v".into(), true)]);
    }
}
