//! Pusher's `channel_occupied` / `channel_vacated` webhooks across nodes joined through
//! Redis: sent once for the cluster, also for a node killed with its channel, after
//! Redis lost its data, around a stalled node, on a Redis Cluster (docs/pusher.md,
//! "Node-level and cluster-wide"); webhooks go to a receiver that checks signatures.
//!
//! `redis-server` must be on the PATH: `make test` installs it (tests/deps.sh).

mod support;

use serde_json::json;

use support::http;
use support::pusher::*;
use support::redis::{wait_for, Node, Redis, TempDir};
use support::redis_cluster::RedisCluster;
use support::webhook::Receiver;

/// A node whose app sends its webhooks to `hooks` at `/<id>` (so that each event says
/// which node sent it), with the shortest presence TTL (which occupancy entries use).
fn hooked_node(id: &str, redis: &Redis, hooks: &Receiver, dir: &TempDir) -> Node {
    hooked_node_on(id, &redis.url(), &[], hooks, dir)
}

/// The same, joined to the Redis deployment `url` names, with more `--set` settings.
fn hooked_node_on(id: &str, url: &str, set: &[&str], hooks: &Receiver, dir: &TempDir) -> Node {
    let config = dir.0.join(format!("{id}.toml"));
    let hook_url = hooks.url(&format!("/{id}"));
    std::fs::write(&config, format!("{CONFIG}webhook_url = \"{hook_url}\"\n")).unwrap();
    let mut set = set.to_vec();
    set.push("presence_ttl_ms=3000");
    Node::start_url(id, url, Some(&config), &set)
}

/// Proves that every event `c` (a client of node `node`) caused before now has been
/// received: its queue to the receiver is in order, so once the `channel_occupied` of
/// a fresh channel subscribed now arrives, nothing earlier from that node is on its way.
async fn sentinel(c: &mut Pc, node: &str, hooks: &Receiver, n: u32) {
    let channel = format!("sentinel-{node}-{n}");
    subscribe(c, &channel, None).await;
    let want = (format!("/{node}"), "channel_occupied".to_owned());
    wait_for(|| hooks.of(&channel).contains(&want));
}

fn hook(node: &str, name: &str) -> (String, String) {
    (format!("/{node}"), name.to_owned())
}

#[tokio::test]
async fn channel_occupied_and_vacated_are_sent_once_for_the_cluster() {
    let dir = TempDir::new("pusher-occupancy");
    let hooks = Receiver::start("k", "s");
    let redis = Redis::start();
    let n1 = hooked_node("n1", &redis, &hooks, &dir);
    let n2 = hooked_node("n2", &redis, &hooks, &dir);
    let (mut a, mut b) = (connect(&n1).await, connect(&n2).await);

    // The first subscriber in the cluster (on n1): channel_occupied, from n1.
    subscribe(&mut a, "news", None).await;
    wait_for(|| !hooks.of("news").is_empty());
    // A second one on n2: nothing (n2's queue proves it).
    subscribe(&mut b, "news", None).await;
    sentinel(&mut b, "n2", &hooks, 1).await;
    sentinel(&mut a, "n1", &hooks, 1).await;
    assert_eq!(hooks.of("news"), [hook("n1", "channel_occupied")]);

    // The first leaves (n1): nothing.
    send(
        &mut a,
        json!({"event":"pusher:unsubscribe","data":{"channel":"news"}}),
    )
    .await;
    sentinel(&mut a, "n1", &hooks, 2).await;
    assert_eq!(hooks.of("news"), [hook("n1", "channel_occupied")]);

    // The last leaves (n2): channel_vacated, once, from n2.
    send(
        &mut b,
        json!({"event":"pusher:unsubscribe","data":{"channel":"news"}}),
    )
    .await;
    wait_for(|| hooks.of("news").len() == 2);
    sentinel(&mut b, "n2", &hooks, 2).await;
    sentinel(&mut a, "n1", &hooks, 3).await;
    assert_eq!(
        hooks.of("news"),
        [
            hook("n1", "channel_occupied"),
            hook("n2", "channel_vacated")
        ]
    );
}

#[tokio::test]
async fn a_killed_nodes_channel_is_vacated_once_after_the_ttl() {
    let dir = TempDir::new("pusher-occupancy-kill");
    let hooks = Receiver::start("k", "s");
    let redis = Redis::start();
    let n1 = hooked_node("n1", &redis, &hooks, &dir);
    let n2 = hooked_node("n2", &redis, &hooks, &dir);
    let mut a = connect(&n1).await;
    let mut b = connect(&n2).await;
    subscribe(&mut b, "lonely", None).await;
    wait_for(|| hooks.of("lonely") == [hook("n2", "channel_occupied")]);

    // SIGKILL (before its client goes, which n2 would report itself): n2 says
    // nothing; its entry expires (3 s) and n1's sweep finds it.
    drop(n2);
    drop(b);
    wait_for(|| hooks.of("lonely").len() == 2);
    sentinel(&mut a, "n1", &hooks, 1).await;
    assert_eq!(
        hooks.of("lonely"),
        [
            hook("n2", "channel_occupied"),
            hook("n1", "channel_vacated")
        ]
    );
}

#[tokio::test]
async fn redis_losing_its_data_repeats_nothing() {
    let dir = TempDir::new("pusher-occupancy-flush");
    let hooks = Receiver::start("k", "s");
    let redis = Redis::start();
    let n1 = hooked_node("n1", &redis, &hooks, &dir);
    let n2 = hooked_node("n2", &redis, &hooks, &dir);
    let (mut a, mut b) = (connect(&n1).await, connect(&n2).await);
    subscribe(&mut a, "kept", None).await;
    subscribe(&mut b, "kept", None).await;
    wait_for(|| !hooks.of("kept").is_empty());

    // Both nodes put their entries again without reporting the channel occupied
    // again: a refresh counted after the flush began after it, and the sentinel
    // (queued behind it in the same task) proves it ended and what it reported.
    let refreshes = "pushgate_broker_occupancy_refreshes_total";
    assert!(redis.command(&["FLUSHALL"]).unwrap().starts_with("+OK"));
    let before = (n1.metric(refreshes), n2.metric(refreshes));
    wait_for(|| n1.metric(refreshes) > before.0 && n2.metric(refreshes) > before.1);
    sentinel(&mut a, "n1", &hooks, 1).await;
    sentinel(&mut b, "n2", &hooks, 1).await;
    assert_eq!(hooks.of("kept").len(), 1, "{:?}", hooks.of("kept"));

    // The counts were rebuilt: the first to leave says nothing, the last vacates.
    let leave = json!({"event":"pusher:unsubscribe","data":{"channel":"kept"}});
    send(&mut a, leave.clone()).await;
    sentinel(&mut a, "n1", &hooks, 2).await;
    assert_eq!(hooks.of("kept").len(), 1, "{:?}", hooks.of("kept"));
    send(&mut b, leave).await;
    wait_for(|| hooks.of("kept").len() == 2);
    sentinel(&mut b, "n2", &hooks, 2).await;
    sentinel(&mut a, "n1", &hooks, 3).await;
    assert_eq!(hooks.of("kept")[1], hook("n2", "channel_vacated"));
    assert_eq!(hooks.of("kept").len(), 2);
    // The occupancy counters are exported and described (`# HELP`).
    let (_, metrics) = http(n1.http, "GET", "/metrics", b"").unwrap();
    for name in [refreshes, "pushgate_broker_occupancy_errors_total"] {
        assert!(metrics.contains(&format!("# HELP {name} ")), "{name}");
    }
}

#[tokio::test]
async fn a_stalled_node_is_vacated_then_occupied_again_when_it_resumes() {
    let dir = TempDir::new("pusher-occupancy-stall");
    let hooks = Receiver::start("k", "s");
    let redis = Redis::start();
    let n1 = hooked_node("n1", &redis, &hooks, &dir);
    let n2 = hooked_node("n2", &redis, &hooks, &dir);
    let mut a = connect(&n1).await;
    let mut b = connect(&n2).await;
    subscribe(&mut b, "stalled", None).await;
    wait_for(|| hooks.of("stalled") == [hook("n2", "channel_occupied")]);

    // n2 stopped past the TTL: n1's sweep vacates the channel. Resumed, n2's refresh
    // finds its entry swept and reports the channel occupied again.
    n2.pause();
    wait_for(|| hooks.of("stalled").len() == 2);
    n2.resume();
    wait_for(|| hooks.of("stalled").len() == 3);
    send(
        &mut b,
        json!({"event":"pusher:unsubscribe","data":{"channel":"stalled"}}),
    )
    .await;
    wait_for(|| hooks.of("stalled").len() == 4);
    sentinel(&mut a, "n1", &hooks, 1).await;
    sentinel(&mut b, "n2", &hooks, 1).await;
    assert_eq!(
        hooks.of("stalled"),
        [
            hook("n2", "channel_occupied"),
            hook("n1", "channel_vacated"),
            hook("n2", "channel_occupied"),
            hook("n2", "channel_vacated"),
        ]
    );
}

#[tokio::test]
async fn occupancy_works_on_a_redis_cluster_on_the_apps_master() {
    let dir = TempDir::new("pusher-occupancy-cluster");
    let hooks = Receiver::start("k", "s");
    let redis = RedisCluster::start(1000);
    redis.wait_ok();
    let set = ["redis_mode=cluster"];
    let n1 = hooked_node_on("n1", &redis.url(), &set, &hooks, &dir);
    let n2 = hooked_node_on("n2", &redis.url(), &set, &hooks, &dir);
    let (mut a, mut b) = (connect(&n1).await, connect(&n2).await);
    // The app's keys live on the master of its hash tag, and only while occupied.
    let count = "pushgate:occupancy:{1}:count";
    let master = redis.node(redis.master_of(count).unwrap());
    let news = || master.command(&["HEXISTS", count, "news"]);

    subscribe(&mut a, "news", None).await;
    wait_for(|| !hooks.of("news").is_empty());
    subscribe(&mut b, "news", None).await;
    assert_eq!(news().as_deref(), Some(":1\r\n"));
    let leave = json!({"event":"pusher:unsubscribe","data":{"channel":"news"}});
    send(&mut b, leave.clone()).await;
    sentinel(&mut b, "n2", &hooks, 1).await;
    send(&mut a, leave).await;
    wait_for(|| hooks.of("news").len() == 2);
    sentinel(&mut a, "n1", &hooks, 1).await;
    sentinel(&mut b, "n2", &hooks, 2).await;
    assert_eq!(
        hooks.of("news"),
        [
            hook("n1", "channel_occupied"),
            hook("n1", "channel_vacated")
        ]
    );
    assert_eq!(news().as_deref(), Some(":0\r\n"), "no longer occupied");
}

#[tokio::test]
async fn one_node_without_redis_reports_its_own_transitions() {
    let dir = TempDir::new("pusher-occupancy-alone");
    let hooks = Receiver::start("k", "s");
    let config = dir.0.join("n1.toml");
    let url = hooks.url("/n1");
    std::fs::write(&config, format!("{CONFIG}webhook_url = \"{url}\"\n")).unwrap();
    let n1 = Node::start_alone("n1", Some(&config));
    let (mut a, mut b) = (connect(&n1).await, connect(&n1).await);
    subscribe(&mut a, "news", None).await;
    subscribe(&mut b, "news", None).await;
    let leave = json!({"event":"pusher:unsubscribe","data":{"channel":"news"}});
    send(&mut a, leave.clone()).await;
    sentinel(&mut a, "n1", &hooks, 1).await;
    assert_eq!(hooks.of("news"), [hook("n1", "channel_occupied")]);
    send(&mut b, leave).await;
    wait_for(|| hooks.of("news").len() == 2);
    sentinel(&mut a, "n1", &hooks, 2).await;
    assert_eq!(
        hooks.of("news"),
        [
            hook("n1", "channel_occupied"),
            hook("n1", "channel_vacated")
        ]
    );
}

#[tokio::test]
async fn a_channel_got_while_redis_was_down_is_reported_when_it_is_back() {
    let dir = TempDir::new("pusher-occupancy-down");
    let hooks = Receiver::start("k", "s");
    let mut redis = Redis::start();
    let n1 = hooked_node("n1", &redis, &hooks, &dir);
    let mut a = connect(&n1).await;
    subscribe(&mut a, "before", None).await;
    wait_for(|| hooks.of("before") == [hook("n1", "channel_occupied")]);

    // Redis killed; a subscribe meanwhile (its reply waits for Redis); Redis back
    // without its data: the new channel is reported, the old one not again.
    let errors = "pushgate_broker_occupancy_errors_total";
    let e0 = n1.metric(errors);
    redis.kill();
    // The occupancy task found Redis gone (a failed reconnection is counted).
    wait_for(|| n1.metric(errors) > e0);
    let d = json!({"channel": "during"});
    send(&mut a, json!({"event":"pusher:subscribe","data":d})).await;
    redis.restart();
    let m = next(&mut a.ws).await;
    assert_eq!(m["event"], "pusher_internal:subscription_succeeded", "{m}");
    wait_for(|| hooks.of("during") == [hook("n1", "channel_occupied")]);
    sentinel(&mut a, "n1", &hooks, 1).await;
    assert_eq!(hooks.of("before"), [hook("n1", "channel_occupied")]);
    assert_eq!(hooks.of("during"), [hook("n1", "channel_occupied")]);
}
