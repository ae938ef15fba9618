//! The Pusher protocol across nodes joined through a real `redis-server`: a pushgate.v1
//! publication on one node reaches Pusher subscribers of the other; a client event
//! crosses nodes (and is not echoed); presence members are listed and announced across
//! nodes; the HTTP API's channel lists and subscription counts sum every node's
//! subscribers, refuse (503) while a node does not answer, and stop counting a killed
//! node; `channel_occupied` / `channel_vacated` webhooks are sent once for the
//! cluster, also for a node killed with its channel (docs/pusher.md). Clients are
//! tokio-tungstenite speaking Pusher's frames; API requests are signed as the server
//! SDKs sign them; webhooks go to a test receiver. Members are Pusher's: users,
//! announced once for the cluster (`member_added` for a user's first connection
//! anywhere, `member_removed` for its last), to subscribers and to the webhook receiver.
//!
//! `redis-server` must be on the PATH: `make test` installs it (tests/deps.sh).

mod support;

use futures_util::{SinkExt, StreamExt};
use pushgate_pusher::api::{body_md5, sign};
use pushgate_pusher::{auth, PusherApp};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use support::http;
use support::redis::{wait_for, wait_for_within, Node, Redis, TempDir, WAIT};
use support::redis_cluster::RedisCluster;
use support::webhook::Receiver;

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

/// A Pusher HTTP API request to node `n`, signed as the server SDKs sign it (values
/// here need no URL escaping); the status and body.
fn pusher_api(
    n: &Node,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut all: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push(("auth_key".into(), "k".into()));
    all.push(("auth_timestamp".into(), now.to_string()));
    all.push(("auth_version".into(), "1.0".into()));
    if !body.is_empty() {
        all.push(("body_md5".into(), body_md5(body.as_bytes())));
    }
    all.sort();
    let q: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let q = q.join("&");
    let sig = sign("s", &format!("{method}\n{path}\n{q}"));
    let target = format!("{path}?{q}&auth_signature={sig}");
    http(n.http, method, &target, body.as_bytes()).expect("the API answers")
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
