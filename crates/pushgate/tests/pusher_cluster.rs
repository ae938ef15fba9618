//! The Pusher protocol across nodes joined through a real `redis-server`: a pushgate.v1
//! publication on one node reaches Pusher subscribers of the other; a client event
//! crosses nodes (and is not echoed); presence members are listed and announced across
//! nodes (docs/pusher.md), as Pusher's members are: users, announced once for the
//! cluster (`member_added` for a user's first connection anywhere, `member_removed` for
//! its last), to subscribers and to the webhook receiver. Clients are
//! tokio-tungstenite speaking Pusher's frames; webhooks go to a receiver thread.
//!
//! `redis-server` must be on the PATH: `make test` installs it (tests/deps.sh).

mod support;

use futures_util::{SinkExt, StreamExt};
use pushgate_pusher::{auth, PusherApp};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use support::hooks::Hooks;
use support::http;
use support::redis::{wait_for, wait_for_within, Node, Redis, TempDir, WAIT};
use support::redis_cluster::RedisCluster;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn app() -> PusherApp {
    PusherApp {
        id: "1".into(),
        key: "k".into(),
        secret: "s".into(),
        client_events: true,
        ..PusherApp::default()
    }
}

const CONFIG: &str =
    "[[pusher_apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nclient_events = true\n";

struct Pc {
    ws: Ws,
    socket_id: String,
}

/// The next Pusher message (pings skipped), `data` parsed when it is a JSON string.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time");
        if let Some(Ok(Message::Text(t))) = m {
            let mut v: Value = serde_json::from_str(&t).unwrap();
            if let Some(Value::String(s)) = v.get("data") {
                if let Ok(d) = serde_json::from_str::<Value>(s) {
                    v["data"] = d;
                }
            }
            return v;
        }
        assert!(
            matches!(m, Some(Ok(Message::Ping(_) | Message::Pong(_)))),
            "{m:?}"
        );
    }
}

async fn connect(node: &Node) -> Pc {
    let url = format!("ws://{}/app/k?protocol=7&client=js&version=8.4.0", node.ws);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let m = next(&mut ws).await;
    assert_eq!(m["event"], "pusher:connection_established", "{m}");
    let socket_id = m["data"]["socket_id"].as_str().unwrap().to_owned();
    Pc { ws, socket_id }
}

async fn send(c: &mut Pc, v: Value) {
    c.ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Subscribes with the app's signature; returns `subscription_succeeded`.
async fn subscribe(c: &mut Pc, channel: &str, user: Option<&str>) -> Value {
    let data = user.map(|u| json!({"user_id": u, "user_info": {"name": u}}).to_string());
    let mut d = json!({"channel": channel});
    if channel.starts_with("private-") || channel.starts_with("presence-") {
        d["auth"] = auth::channel_auth(&app(), &c.socket_id, channel, data.as_deref()).into();
    }
    if let Some(data) = data {
        d["channel_data"] = data.into();
    }
    send(c, json!({"event":"pusher:subscribe","data":d})).await;
    let m = next(&mut c.ws).await;
    assert_eq!(m["event"], "pusher_internal:subscription_succeeded", "{m}");
    m
}

/// Members of a presence channel as node `n` reads them (every node's, from Redis).
fn members(n: &Node, channel: &str) -> usize {
    let path = format!("/presence?channel={}", channel.replace('/', "%2F"));
    let (status, body) = http(n.http, "GET", &path, b"").expect("GET /presence");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["clients"].as_array().map_or(0, Vec::len)
}

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

/// The presence channel of the member tests, its pushgate channel and bus key.
const ROOM: &str = "presence-room";
const PG_ROOM: &str = "pusher/1/presence-room";
const BUS_ROOM: &str = "pushgate:ch:{pusher/1/presence-room}";

/// Three nodes on one Redis whose app sends webhooks to `hooks`.
fn three_nodes(redis: &Redis, hooks: &Hooks, set: &[&str]) -> (Vec<Node>, TempDir) {
    three_nodes_url(&redis.url(), hooks, set)
}

/// Three nodes joined through the Redis deployment `url` names.
fn three_nodes_url(url: &str, hooks: &Hooks, set: &[&str]) -> (Vec<Node>, TempDir) {
    let dir = TempDir::new("pusher-members");
    let config = dir.0.join("pushgate.toml");
    let text = format!("{CONFIG}webhook_url = \"{}\"\n", hooks.url);
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
async fn webhook_sentinel(s: &mut Pc, hooks: &Hooks, tag: &str) {
    send(
        s,
        json!({"event":"client-mark","channel":"private-s","data":{"tag":tag}}),
    )
    .await;
    wait_for(|| hooks.client_event(tag));
}

/// Connects to `node` and subscribes to `private-s` (a webhook sentinel sender).
async fn sentinel(node: &Node) -> Pc {
    let mut s = connect(node).await;
    subscribe(&mut s, "private-s", None).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_on_two_nodes_is_one_member_for_the_cluster() {
    let hooks = Hooks::start();
    let redis = Redis::start();
    let (nodes, _dir) = three_nodes(&redis, &hooks, &[]);
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut w = connect(n3).await;
    subscribe(&mut w, ROOM, Some("w")).await;
    wait_for(|| redis.subscribers(BUS_ROOM) == Some(1));
    let (mut s1, mut s2) = (sentinel(n1).await, sentinel(n2).await);

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
    let hooks = Hooks::start();
    let redis = Redis::start();
    let (nodes, _dir) = three_nodes(&redis, &hooks, &[]);
    last_leaves_at_once(&nodes, &hooks, || redis.subscribers(BUS_ROOM)).await;
}

/// The same on a Redis Cluster of three masters: the room's keys and its bus key are
/// on one master, where its scripts run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_last_leaves_at_once_remove_the_user_once() {
    let hooks = Hooks::start();
    let cluster = RedisCluster::start(5000);
    let (nodes, _dir) = three_nodes_url(&cluster.url(), &hooks, &["redis_mode=cluster"]);
    let master = cluster.node(cluster.master_of(BUS_ROOM).expect("a master"));
    last_leaves_at_once(&nodes, &hooks, || master.subscribers(BUS_ROOM)).await;
}

/// u on n1 and n2, a subscriber on n3; both of u's connections close together: the
/// scripts judge one of them the last.
async fn last_leaves_at_once(nodes: &[Node], hooks: &Hooks, followers: impl Fn() -> Option<u32>) {
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut w = connect(n3).await;
    subscribe(&mut w, ROOM, Some("w")).await;
    wait_for(|| followers() == Some(1));
    let (mut s1, mut s2) = (sentinel(n1).await, sentinel(n2).await);
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
    let hooks = Hooks::start();
    let redis = Redis::start();
    let (mut nodes, _dir) = three_nodes(&redis, &hooks, &["presence_ttl_ms=3000"]);
    let mut w = connect(&nodes[2]).await;
    subscribe(&mut w, ROOM, Some("w")).await;
    wait_for(|| redis.subscribers(BUS_ROOM) == Some(1));
    let mut s1 = sentinel(&nodes[0]).await;
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
