//! The Pusher protocol across nodes joined through a real `redis-server`: a pushgate.v1
//! publication on one node reaches Pusher subscribers of the other; a client event
//! crosses nodes (and is not echoed); presence members are listed and announced across
//! nodes; the HTTP API's channel lists and subscription counts sum every node's
//! subscribers, refuse (503) while a node does not answer, and stop counting a killed
//! node (docs/pusher.md). Clients are tokio-tungstenite speaking Pusher's frames
//! (tests/support/pusher.rs); API requests are signed as the server SDKs sign them.
//!
//! `redis-server` must be on the PATH: `make test` installs it (tests/deps.sh).

mod support;

use serde_json::{json, Value};

use support::http;
use support::pusher::*;
use support::redis::{wait_for, Node, Redis, TempDir};
use support::redis_cluster::RedisCluster;

#[tokio::test]
async fn publications_client_events_and_presence_cross_nodes() {
    let dir = TempDir::new("pusher-cluster");
    let config = dir.0.join("pushgate.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let redis = Redis::start();
    let n1 = Node::start_with("n1", &redis, Some(&config), &[]);
    let n2 = Node::start_with("n2", &redis, Some(&config), &[]);

    // pushgate.v1 on n2 -> a Pusher subscriber on n1.
    let mut a = connect(&n1).await;
    subscribe(&mut a, "private-chat", None).await;
    let (status, body) = http(
        n2.http,
        "POST",
        "/publish?channel=pusher/1/private-chat",
        b"from n2",
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let m = next(&mut a.ws).await;
    assert_eq!(
        (m["event"].as_str(), m["data"].as_str()),
        (Some("pushgate:publication"), Some("from n2")),
        "{m}"
    );

    // A client event on n2 reaches n1, not its sender; a marker proves the sender got nothing.
    let mut b = connect(&n2).await;
    subscribe(&mut b, "private-chat", None).await;
    send(
        &mut b,
        json!({"event":"client-hi","channel":"private-chat","data":{"x":1}}),
    )
    .await;
    let m = next(&mut a.ws).await;
    assert_eq!(
        (m["event"].as_str(), m["data"]["x"].as_u64()),
        (Some("client-hi"), Some(1)),
        "{m}"
    );
    http(
        n1.http,
        "POST",
        "/publish?channel=pusher/1/private-chat",
        b"marker",
    )
    .unwrap();
    assert_eq!(next(&mut b.ws).await["data"], "marker");
    assert_eq!(next(&mut a.ws).await["data"], "marker");

    // Presence: alice on n1, then bob on n2 sees both; alice hears bob come and go.
    let room = "presence-room";
    let r = subscribe(&mut a, room, Some("alice")).await;
    assert_eq!(r["data"]["presence"]["count"], 1, "{r}");
    wait_for(|| members(&n2, "pusher/1/presence-room") == 1);
    let r = subscribe(&mut b, room, Some("bob")).await;
    assert_eq!(r["data"]["presence"]["count"], 2, "{r}");
    let m = next(&mut a.ws).await;
    assert_eq!(
        (m["event"].as_str(), m["data"]["user_id"].as_str()),
        (Some("pusher_internal:member_added"), Some("bob")),
        "{m}"
    );
    send(
        &mut b,
        json!({"event":"pusher:unsubscribe","data":{"channel":room}}),
    )
    .await;
    let m = next(&mut a.ws).await;
    assert_eq!(
        (m["event"].as_str(), m["data"]["user_id"].as_str()),
        (Some("pusher_internal:member_removed"), Some("bob")),
        "{m}"
    );
}

/// `GET /apps/1/channels/{name}?info=subscription_count` on `n`, parsed (200 only).
fn channel_info(n: &Node, name: &str) -> Value {
    let path = format!("/apps/1/channels/{name}");
    let (status, body) = pusher_api(n, "GET", &path, &[("info", "subscription_count")], "");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// `GET /apps/1/channels` on `n` (with `filter_by_prefix` if not empty): each listed
/// channel's subscription count.
fn channel_list(n: &Node, prefix: &str) -> Vec<(String, u64)> {
    let mut params = vec![("info", "subscription_count")];
    if !prefix.is_empty() {
        params.push(("filter_by_prefix", prefix));
    }
    let (status, body) = pusher_api(n, "GET", "/apps/1/channels", &params, "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut out: Vec<(String, u64)> = v["channels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, a)| (k.clone(), a["subscription_count"].as_u64().unwrap()))
        .collect();
    out.sort();
    out
}

fn pairs(p: &[(&str, u64)]) -> Vec<(String, u64)> {
    p.iter().map(|(c, n)| (c.to_string(), *n)).collect()
}

#[tokio::test]
async fn channel_lists_and_counts_sum_every_node_and_refuse_without_one() {
    let dir = TempDir::new("pusher-census");
    let config = dir.0.join("pushgate.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let redis = Redis::start();
    let n1 = Node::start_with("n1", &redis, Some(&config), &[]);
    let n2 = Node::start_with("n2", &redis, Some(&config), &[]);

    // `news`: one subscriber on n1, two on n2; `private-far`: one, on n2 only.
    let mut a = connect(&n1).await;
    subscribe(&mut a, "news", None).await;
    let mut b1 = connect(&n2).await;
    subscribe(&mut b1, "news", None).await;
    let mut b2 = connect(&n2).await;
    subscribe(&mut b2, "news", None).await;
    subscribe(&mut b2, "private-far", None).await;

    // Either node answers for both.
    for n in [&n1, &n2] {
        assert_eq!(
            channel_info(n, "news"),
            json!({"occupied": true, "subscription_count": 3}),
            "on {}",
            n.id
        );
        assert_eq!(
            channel_info(n, "private-far"),
            json!({"occupied": true, "subscription_count": 1}),
            "on {}",
            n.id
        );
        assert_eq!(
            channel_list(n, ""),
            pairs(&[("news", 3), ("private-far", 1)]),
            "on {}",
            n.id
        );
    }
    assert_eq!(channel_list(&n1, "private-"), pairs(&[("private-far", 1)]));
    assert_eq!(channel_list(&n1, "nobody-"), pairs(&[]));
    // An event's `info` answer counts every node too.
    let body = r#"{"name":"e","channels":["news","private-far","quiet"],"data":"x","info":"subscription_count"}"#;
    let (status, answer) = pusher_api(&n1, "POST", "/apps/1/events", &[], body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap(),
        json!({"channels":{
            "news":{"subscription_count":3},
            "private-far":{"subscription_count":1},
            "quiet":{"subscription_count":0},
        }})
    );
    assert_eq!(next(&mut a.ws).await["event"], "e");

    // n2 stalled (SIGSTOP): Redis still counts it among the nodes that hear a query,
    // but it does not answer; n1 refuses rather than count without it.
    n2.pause();
    let (status, body) = pusher_api(
        &n1,
        "GET",
        "/apps/1/channels/news",
        &[("info", "subscription_count")],
        "",
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("did not answer"), "{body}");
    assert_eq!(
        n1.metric(r#"pushgate_broker_census_total{outcome="incomplete"}"#),
        1.0
    );
    assert_eq!(n1.metric("pushgate_broker_census_missing_total"), 1.0);
    n2.resume();
    wait_for(|| {
        pusher_api(
            &n1,
            "GET",
            "/apps/1/channels/news",
            &[("info", "subscription_count")],
            "",
        )
        .0 == 200
    });
    assert_eq!(channel_info(&n1, "news")["subscription_count"], 3);
    let incomplete = n1.metric(r#"pushgate_broker_census_total{outcome="incomplete"}"#);

    // n2 killed: its subscription to the broadcast key went with its connection, so
    // Redis no longer counts it and n1 answers for itself alone, without waiting.
    drop((b1, b2));
    drop(n2);
    wait_for(|| redis.subscribers("pushgate:{all}") == Some(1));
    assert_eq!(
        channel_info(&n1, "news"),
        json!({"occupied": true, "subscription_count": 1})
    );
    assert_eq!(
        channel_info(&n1, "private-far"),
        json!({"occupied": false, "subscription_count": 0})
    );
    assert_eq!(channel_list(&n1, ""), pairs(&[("news", 1)]));
    assert_eq!(
        n1.metric(r#"pushgate_broker_census_total{outcome="incomplete"}"#),
        incomplete,
        "the killed node was not waited for"
    );
}

#[tokio::test]
async fn channel_counts_sum_every_node_on_a_redis_cluster() {
    let redis = RedisCluster::start(1000);
    let dir = TempDir::new("pusher-census-cluster");
    let config = dir.0.join("pushgate.toml");
    std::fs::write(&config, CONFIG).unwrap();
    // Node ids whose node keys (where answers go) live on other masters than the
    // broadcast key (where queries go): both paths cross the cluster.
    let all = redis.master_of("pushgate:{all}").unwrap();
    let ids: Vec<String> = (0..200)
        .map(|i| format!("n{i}"))
        .filter(|id| redis.master_of(&format!("pushgate:node:{{{id}}}")) != Some(all))
        .take(2)
        .collect();
    let set = ["redis_mode=cluster", "redis_timeout_ms=1000"];
    let n1 = Node::start_url(&ids[0], &redis.url(), Some(&config), &set);
    let n2 = Node::start_url(&ids[1], &redis.url(), Some(&config), &set);
    let mut a = connect(&n1).await;
    subscribe(&mut a, "news", None).await;
    let mut b = connect(&n2).await;
    subscribe(&mut b, "news", None).await;
    subscribe(&mut b, "presence-far", Some("bob")).await;
    for n in [&n1, &n2] {
        assert_eq!(
            channel_info(n, "news"),
            json!({"occupied": true, "subscription_count": 2}),
            "on {}",
            n.id
        );
        assert_eq!(
            channel_list(n, ""),
            pairs(&[("news", 2), ("presence-far", 1)]),
            "on {}",
            n.id
        );
    }
}
