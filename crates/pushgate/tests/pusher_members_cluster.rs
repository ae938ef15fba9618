//! Pusher's members across nodes joined through Redis: users, announced once for the
//! cluster (`member_added` for a user's first connection anywhere, `member_removed` for
//! its last), to subscribers and to the webhook receiver, also when the last two
//! connections leave at once and when a node is killed (docs/pusher.md, presence.md).
//!
//! `redis-server` must be on the PATH: `make test` installs it (tests/deps.sh).

mod support;

use serde_json::json;

use support::http;
use support::pusher::*;
use support::redis::{wait_for, wait_for_within, Node, Redis, TempDir};
use support::redis_cluster::RedisCluster;
use support::webhook::Receiver;

/// The presence channel of the member tests, its pushgate channel and bus key.
const ROOM: &str = "presence-room";
const PG_ROOM: &str = "pusher/1/presence-room";
const BUS_ROOM: &str = "pushgate:ch:{pusher/1/presence-room}";

/// Three nodes on one Redis whose app sends webhooks to `hooks`.
fn three_nodes(redis: &Redis, hooks: &Receiver, set: &[&str]) -> (Vec<Node>, TempDir) {
    three_nodes_url(&redis.url(), hooks, set)
}

/// Three nodes joined through the Redis deployment `url` names.
fn three_nodes_url(url: &str, hooks: &Receiver, set: &[&str]) -> (Vec<Node>, TempDir) {
    let dir = TempDir::new("pusher-members");
    let config = dir.0.join("pushgate.toml");
    let text = format!("{CONFIG}webhook_url = \"{}\"\n", hooks.url("/hooks"));
    std::fs::write(&config, text).unwrap();
    let nodes = ["n1", "n2", "n3"]
        .iter()
        .map(|id| Node::start_url(id, url, Some(&config), set))
        .collect();
    (nodes, dir)
}

/// The next message must be member event `event` (`member_added`…) of `user`.
async fn expect_member(c: &mut Pc, event: &str, user: &str) {
    let m = next(&mut c.ws).await;
    assert_eq!(
        (m["event"].as_str(), m["data"]["user_id"].as_str()),
        (
            Some(format!("pusher_internal:{event}").as_str()),
            Some(user)
        ),
        "{m}"
    );
}

/// Publishes `marker` to the room through `via` (its bus, after every note Redis
/// already has) and checks it is `c`'s next message: nothing came before it.
async fn expect_marker(c: &mut Pc, via: &Node, marker: &str) {
    let path = format!("/publish?channel={PG_ROOM}");
    let (status, body) = http(via.http, "POST", &path, marker.as_bytes()).unwrap();
    assert_eq!(status, 200, "{body}");
    let m = next(&mut c.ws).await;
    assert_eq!(
        (m["event"].as_str(), m["data"].as_str()),
        (Some("pushgate:publication"), Some(marker)),
        "{m}"
    );
}

/// A client event tagged `tag` from `s` (subscribed to `private-s`): its webhook comes
/// after every webhook its node sent before it (one queue per app and node), so
/// waiting for it proves that node sent nothing else meanwhile.
async fn webhook_sentinel(s: &mut Pc, hooks: &Receiver, tag: &str) {
    send(
        s,
        json!({"event":"client-mark","channel":"private-s","data":{"tag":tag}}),
    )
    .await;
    wait_for(|| hooks.client_event(tag));
}

/// Connects to `node` and subscribes to `private-s` (a webhook sentinel sender).
async fn sentinel_client(node: &Node) -> Pc {
    let mut s = connect(node).await;
    subscribe(&mut s, "private-s", None).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_on_two_nodes_is_one_member_for_the_cluster() {
    let hooks = Receiver::start("k", "s");
    let redis = Redis::start();
    let (nodes, _dir) = three_nodes(&redis, &hooks, &[]);
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut w = connect(n3).await;
    subscribe(&mut w, ROOM, Some("w")).await;
    wait_for(|| redis.subscribers(BUS_ROOM) == Some(1));
    let (mut s1, mut s2) = (sentinel_client(n1).await, sentinel_client(n2).await);

    // u's first connection (n1): announced; its second (n2): not, to n3's subscriber
    // nor by a second webhook.
    let mut u1 = connect(n1).await;
    subscribe(&mut u1, ROOM, Some("u")).await;
    expect_member(&mut w, "member_added", "u").await;
    let mut u2 = connect(n2).await;
    let r = subscribe(&mut u2, ROOM, Some("u")).await;
    assert_eq!(
        r["data"]["presence"]["count"], 2,
        "users, not connections: {r}"
    );
    wait_for(|| members(n3, PG_ROOM) == 3);
    expect_marker(&mut w, n2, "after the second join").await;
    webhook_sentinel(&mut s2, &hooks, "after-join-2").await;
    webhook_sentinel(&mut s1, &hooks, "after-join-1").await;
    assert_eq!(hooks.count("member_added", "u"), 1);

    // One of the two leaves: u is still a member.
    u1.ws.close(None).await.unwrap();
    wait_for(|| members(n3, PG_ROOM) == 2);
    expect_marker(&mut w, n1, "after the first leave").await;
    webhook_sentinel(&mut s1, &hooks, "after-leave-1").await;
    assert_eq!(hooks.count("member_removed", "u"), 0);

    // The last one leaves: exactly one member_removed, to subscribers and webhooks.
    u2.ws.close(None).await.unwrap();
    expect_member(&mut w, "member_removed", "u").await;
    wait_for(|| members(n3, PG_ROOM) == 1);
    expect_marker(&mut w, n2, "after the last leave").await;
    wait_for(|| hooks.count("member_removed", "u") == 1);
    webhook_sentinel(&mut s2, &hooks, "after-leave-2").await;
    webhook_sentinel(&mut s1, &hooks, "after-leave-2b").await;
    assert_eq!(
        (
            hooks.count("member_added", "u"),
            hooks.count("member_removed", "u")
        ),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_leaves_on_two_nodes_at_once_remove_the_user_once() {
    let hooks = Receiver::start("k", "s");
    let redis = Redis::start();
    let (nodes, _dir) = three_nodes(&redis, &hooks, &[]);
    last_leaves_at_once(&nodes, &hooks, || redis.subscribers(BUS_ROOM)).await;
}

/// The same on a Redis Cluster of three masters: the room's keys and its bus key are
/// on one master, where its scripts run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_last_leaves_at_once_remove_the_user_once() {
    let hooks = Receiver::start("k", "s");
    let cluster = RedisCluster::start(5000);
    let (nodes, _dir) = three_nodes_url(&cluster.url(), &hooks, &["redis_mode=cluster"]);
    let master = cluster.node(cluster.master_of(BUS_ROOM).expect("a master"));
    last_leaves_at_once(&nodes, &hooks, || master.subscribers(BUS_ROOM)).await;
}

/// u on n1 and n2, a subscriber on n3; both of u's connections close together: the
/// scripts judge one of them the last.
async fn last_leaves_at_once(
    nodes: &[Node],
    hooks: &Receiver,
    followers: impl Fn() -> Option<u32>,
) {
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut w = connect(n3).await;
    subscribe(&mut w, ROOM, Some("w")).await;
    wait_for(|| followers() == Some(1));
    let (mut s1, mut s2) = (sentinel_client(n1).await, sentinel_client(n2).await);
    let mut u1 = connect(n1).await;
    subscribe(&mut u1, ROOM, Some("u")).await;
    expect_member(&mut w, "member_added", "u").await;
    let mut u2 = connect(n2).await;
    subscribe(&mut u2, ROOM, Some("u")).await;
    wait_for(|| members(n3, PG_ROOM) == 3);

    let (a, b) = tokio::join!(u1.ws.close(None), u2.ws.close(None));
    a.unwrap();
    b.unwrap();
    expect_member(&mut w, "member_removed", "u").await;
    wait_for(|| members(n3, PG_ROOM) == 1);
    expect_marker(&mut w, n1, "after both leaves").await;
    wait_for(|| hooks.count("member_removed", "u") == 1);
    webhook_sentinel(&mut s1, hooks, "after-1").await;
    webhook_sentinel(&mut s2, hooks, "after-2").await;
    assert_eq!(
        (
            hooks.count("member_added", "u"),
            hooks.count("member_removed", "u")
        ),
        (1, 1)
    );
}

/// A node killed with SIGKILL: its members expire from Redis within the TTL; the node
/// whose cleanup removes a user's last connection announces `member_removed` once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_last_member_of_a_user_is_removed_once_after_the_ttl() {
    let hooks = Receiver::start("k", "s");
    let redis = Redis::start();
    let (mut nodes, _dir) = three_nodes(&redis, &hooks, &["presence_ttl_ms=3000"]);
    let mut w = connect(&nodes[2]).await;
    subscribe(&mut w, ROOM, Some("w")).await;
    wait_for(|| redis.subscribers(BUS_ROOM) == Some(1));
    let mut s1 = sentinel_client(&nodes[0]).await;
    let mut doomed = connect(&nodes[1]).await;
    subscribe(&mut doomed, ROOM, Some("doomed")).await;
    expect_member(&mut w, "member_added", "doomed").await;
    drop(nodes.remove(1)); // SIGKILL: n2 says nothing
                           // The survivors' refresh (every ttl / 3) or a read removes it once its entry expired.
    wait_for_within(std::time::Duration::from_secs(10), || {
        members(&nodes[1], PG_ROOM) == 1
    });
    expect_member(&mut w, "member_removed", "doomed").await;
    expect_marker(&mut w, &nodes[0], "after the expiry").await;
    wait_for(|| hooks.count("member_removed", "doomed") == 1);
    webhook_sentinel(&mut s1, &hooks, "after-expiry").await;
    assert_eq!(hooks.count("member_removed", "doomed"), 1);
    drop(doomed);
}
