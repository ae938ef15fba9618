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
