//! Presence across nodes, as docs/presence.md says: a real `redis-server` (and a real
//! Redis Cluster of three masters), two `pushgate` processes with a `[[presence]]`
//! rule, WebSocket clients (tokio-tungstenite) joining and leaving on both, and a node
//! killed with SIGKILL.
//!
//! `redis-server` and `redis-cli` must be on the PATH: `make test` installs them
//! (tests/deps.sh).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pushgate_grpc::pb::{self, pushgate_client::PushgateClient};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use support::http;
use support::redis::{wait_for, wait_for_within, Node, Redis, TempDir, WAIT};
use support::redis_cluster::RedisCluster;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Short, so that the SIGKILL test waits little; refreshed every second.
const TTL_MS: u64 = 3_000;

/// One test at a time: each runs Redis and two nodes (one of them 1,000 clients) on
/// what may be a 2-core machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    nodes: Vec<Node>,
    redis: Redis,
    _dir: TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let redis = Redis::start();
        let (nodes, dir) = start_nodes(&redis.url(), &[]);
        Cluster {
            nodes,
            redis,
            _dir: dir,
        }
    }
}

/// Two nodes with the `room:*` presence rule, joined through `url`.
fn start_nodes(url: &str, more: &[&str]) -> (Vec<Node>, TempDir) {
    let dir = TempDir::new("presence-cluster");
    let config = dir.0.join("pushgate.toml");
    std::fs::write(&config, "[[presence]]\nchannels = \"room:*\"\n").unwrap();
    let ttl = format!("presence_ttl_ms={TTL_MS}");
    let mut set = vec![ttl.as_str(), "max_inbound_messages_per_sec=0"];
    set.extend(more);
    let nodes = ["n1", "n2"]
        .iter()
        .map(|id| Node::start_url(id, url, Some(&config), &set))
        .collect();
    (nodes, dir)
}

/// A client, its connection id, and whether it asked for events.
struct Client {
    ws: Ws,
    id: String,
}

impl Client {
    async fn connect(node: &Node, user: Option<&str>) -> Client {
        let mut req = format!("ws://{}/ws", node.ws)
            .into_client_request()
            .unwrap();
        if let Some(u) = user {
            req.headers_mut().insert("x-user", u.parse().unwrap());
        }
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
            .await
            .expect("connects in time")
            .unwrap();
        let mut c = Client {
            ws,
            id: String::new(),
        };
        let hello = c.next().await;
        assert_eq!(hello["type"], "connected", "{hello}");
        c.id = hello["conn"].as_str().unwrap().to_owned();
        c
    }

    async fn next(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a message in time");
            match m {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// Subscribes and waits for `subscribed`.
    async fn subscribe(&mut self, channel: &str, events: bool) {
        self.send(json!({"type":"subscribe","channels":[channel],"presence_events":events}))
            .await;
        let r = self.next().await;
        assert_eq!(r["type"], "subscribed", "{r}");
    }

    /// The next message, which must be an event of `kind` about `conn` on `channel`.
    async fn expect_event(&mut self, kind: &str, channel: &str, conn: &str, user: Option<&str>) {
        let m = self.next().await;
        assert_eq!(
            (
                m["type"].as_str(),
                m["channel"].as_str(),
                m["conn"].as_str()
            ),
            (Some(kind), Some(channel), Some(conn)),
            "{m}"
        );
        assert_eq!(m["user"].as_str(), user, "{m}");
    }
}

/// `GET /presence?channel=C` on a node: (connection ids, users, clients_count).
fn presence(node: &Node, channel: &str) -> Option<(BTreeSet<String>, u64, u64)> {
    let (status, body) = http(
        node.http,
        "GET",
        &format!("/presence?channel={channel}"),
        b"",
    )?;
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).unwrap();
    let conns = v["clients"]
        .as_array()?
        .iter()
        .map(|c| c["conn"].as_str().unwrap().to_owned())
        .collect();
    Some((conns, v["users"].as_u64()?, v["clients_count"].as_u64()?))
}

/// Waits until every node lists exactly `want` with `users` distinct users.
#[track_caller]
fn wait_presence(nodes: &[&Node], channel: &str, want: &BTreeSet<String>, users: u64) {
    let n = want.len() as u64;
    wait_for(|| {
        nodes.iter().all(|node| {
            presence(node, channel)
                .is_some_and(|(c, u, count)| &c == want && u == users && count == n)
        })
    });
}

async fn online(node: &Node, users: &[&str]) -> Vec<bool> {
    let mut g = PushgateClient::connect(format!("http://{}", node.grpc))
        .await
        .unwrap();
    let r = g
        .online(pb::OnlineRequest {
            users: users.iter().map(|u| u.to_string()).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    r.users.into_iter().map(|u| u.online).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_leaves_and_events_cross_nodes() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start();
    let (n1, n2) = (&c.nodes[0], &c.nodes[1]);
    let mut watcher = Client::connect(n1, Some("wendy")).await;
    watcher.subscribe("room:1", true).await;
    let mut bob = Client::connect(n2, Some("bob")).await;
    bob.subscribe("room:1", false).await;
    watcher
        .expect_event("join", "room:1", &bob.id, Some("bob"))
        .await;
    assert!(bob.id.starts_with("n2-"), "{}", bob.id);
    let mut anon = Client::connect(n2, None).await;
    anon.subscribe("room:1", false).await;
    watcher.expect_event("join", "room:1", &anon.id, None).await;

    let everyone: BTreeSet<String> = [&watcher.id, &bob.id, &anon.id]
        .into_iter()
        .cloned()
        .collect();
    wait_presence(&[n1, n2], "room:1", &everyone, 2);
    // The client command, answered cluster-wide, on the other node.
    bob.send(json!({"type":"presence","channel":"room:1","id":1}))
        .await;
    let r = bob.next().await;
    assert_eq!(
        (r["type"].as_str(), r["clients_count"].as_u64()),
        (Some("presence"), Some(3)),
        "{r}"
    );
    assert_eq!(
        online(n1, &["bob", "wendy", "zed"]).await,
        vec![true, true, false]
    );

    anon.send(json!({"type":"unsubscribe","channel":"room:1"}))
        .await;
    assert_eq!(anon.next().await["type"], "unsubscribed");
    watcher
        .expect_event("leave", "room:1", &anon.id, None)
        .await;
    drop(bob);
    let bob_id = everyone
        .iter()
        .find(|c| **c != watcher.id && **c != anon.id)
        .unwrap()
        .clone();
    watcher
        .expect_event("leave", "room:1", &bob_id, Some("bob"))
        .await;
    wait_presence(&[n1, n2], "room:1", &[watcher.id.clone()].into(), 1);
    wait_for_online(n2, "bob", false).await;
}

async fn wait_for_online(node: &Node, user: &str, want: bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while online(node, &[user]).await != vec![want] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{user} online != {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_sigkill_drops_out_within_the_ttl() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start();
    let mut here = Client::connect(&c.nodes[0], Some("stays")).await;
    here.subscribe("room:2", true).await;
    let mut gone = Vec::new();
    for i in 0..3 {
        let mut cl = Client::connect(&c.nodes[1], Some(&format!("doomed{i}"))).await;
        cl.subscribe("room:2", false).await;
        gone.push(cl);
    }
    let all: BTreeSet<String> = std::iter::once(here.id.clone())
        .chain(gone.iter().map(|c| c.id.clone()))
        .collect();
    wait_presence(&[&c.nodes[0]], "room:2", &all, 4);
    assert_eq!(online(&c.nodes[0], &["doomed0"]).await, vec![true]);

    // SIGKILL (Killed's drop): nothing runs on the node to clean up.
    drop(c.nodes.remove(1));
    let killed = std::time::Instant::now();
    let survivor = &c.nodes[0];
    // Its members expire within the TTL of their last refresh, which was before the
    // kill; a second more for the read itself on a loaded machine.
    wait_for_within(Duration::from_millis(TTL_MS + 1_000), || {
        presence(survivor, "room:2").is_some_and(|(conns, _, _)| conns.len() == 1)
    });
    eprintln!(
        "the killed node's members were gone {:?} after the kill",
        killed.elapsed()
    );
    wait_presence(&[survivor], "room:2", &[here.id.clone()].into(), 1);
    // Redis dropped the dead node's subscriptions with its connection.
    wait_for_online(survivor, "doomed1", false).await;
    drop(gone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_exact_with_1000_clients_joining_and_leaving() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start();
    // 500 clients per node; users u0..u299 (some users on both nodes, some twice).
    let user = |i: usize| format!("u{}", i % 300);
    let mut clients = Vec::new();
    for i in 0..1000 {
        let node = &c.nodes[i % 2];
        clients.push(Client::connect(node, Some(&user(i))).await);
    }
    // Join all at once: every subscribe is sent before any reply is read.
    for cl in clients.iter_mut() {
        cl.send(json!({"type":"subscribe","channels":["room:big"]}))
            .await;
    }
    for cl in clients.iter_mut() {
        assert_eq!(cl.next().await["type"], "subscribed");
    }
    let ids = |cs: &[Client]| cs.iter().map(|c| c.id.clone()).collect::<BTreeSet<_>>();
    let nodes = [&c.nodes[0], &c.nodes[1]];
    wait_presence(&nodes, "room:big", &ids(&clients), 300);

    // Half leave: every other pair closes (250 per node), the rest stay.
    let (mut stay, mut leave) = (Vec::new(), Vec::new());
    for (i, cl) in clients.into_iter().enumerate() {
        if (i / 2) % 2 == 0 {
            stay.push(cl)
        } else {
            leave.push(cl)
        }
    }
    drop(leave);
    // Users left: those of the indices kept.
    let users_left: BTreeSet<String> = (0..1000).filter(|i| (i / 2) % 2 == 0).map(user).collect();
    wait_presence(&nodes, "room:big", &ids(&stay), users_left.len() as u64);

    // The rest unsubscribe, all at once.
    for cl in stay.iter_mut() {
        cl.send(json!({"type":"unsubscribe","channel":"room:big"}))
            .await;
    }
    for cl in stay.iter_mut() {
        assert_eq!(cl.next().await["type"], "unsubscribed");
    }
    wait_presence(&nodes, "room:big", &BTreeSet::new(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_without_its_data_gets_every_member_back() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start();
    let mut a = Client::connect(&c.nodes[0], Some("a")).await;
    a.subscribe("room:3", false).await;
    let mut b = Client::connect(&c.nodes[1], Some("b")).await;
    b.subscribe("room:3", false).await;
    let both: BTreeSet<String> = [a.id.clone(), b.id.clone()].into();
    let nodes = [&c.nodes[0], &c.nodes[1]];
    wait_presence(&nodes, "room:3", &both, 2);

    c.redis.kill();
    c.redis.restart();
    // Nothing is in Redis now; each node's presence connection reconnects and puts
    // its members again at once (and every presence_ttl_ms / 3 after).
    wait_presence(&nodes, "room:3", &both, 2);
    assert!(c.nodes[0].metric("pushgate_broker_presence_refreshes_total") >= 2.0);
}

/// Presence on a Redis Cluster of three masters: each channel's keys live on its own
/// master (checked there), every command goes where its slot is, and counts are exact
/// on both nodes through joins and leaves; `Online` asks each user's master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_every_master_holds_its_channels_presence() {
    let _serial = SERIAL.lock().await;
    let redis = RedisCluster::start(5000);
    let (nodes, _dir) = start_nodes(&redis.url(), &["redis_mode=cluster"]);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    // One channel per master, and users whose bus keys are on every master.
    let rooms = redis.spread("room:p", 1);
    let users = redis.spread_keys("user", 2, |u| format!("pushgate:user:{{{u}}}"));
    let masters: BTreeSet<u16> = rooms.iter().map(|r| r.1).collect();
    assert_eq!(masters.len(), 3, "{rooms:?}");

    // Per room: a watcher on n1 with events, and every user joining, alternately on
    // n1 and n2 (so each room has members of both nodes).
    let mut watchers = Vec::new();
    let mut members: Vec<Vec<Client>> = Vec::new();
    for (room, _) in &rooms {
        let mut w = Client::connect(n1, Some("watcher")).await;
        w.subscribe(room, true).await;
        let mut here = Vec::new();
        for (i, (user, _)) in users.iter().enumerate() {
            let mut cl = Client::connect(&nodes[i % 2], Some(user)).await;
            cl.subscribe(room, false).await;
            w.expect_event("join", room, &cl.id, Some(user)).await;
            here.push(cl);
        }
        watchers.push(w);
        members.push(here);
    }
    for ((room, master), (w, here)) in rooms.iter().zip(watchers.iter().zip(&members)) {
        let want: BTreeSet<String> = std::iter::once(w.id.clone())
            .chain(here.iter().map(|c| c.id.clone()))
            .collect();
        wait_presence(&[n1, n2], room, &want, users.len() as u64 + 1);
        // The entries are on the room's own master.
        let key = format!("pushgate:ch:{{{room}}}:presence");
        let hlen = redis.node(*master).command(&["HLEN", &key]);
        assert_eq!(
            hlen,
            Some(format!(":{}\r\n", want.len())),
            "{room} on {master}"
        );
    }
    let names: Vec<&str> = users.iter().map(|u| u.0.as_str()).collect();
    let mut asked = names.clone();
    asked.push("nobody");
    let mut all_on = vec![true; names.len()];
    all_on.push(false);
    assert_eq!(online(n2, &asked).await, all_on);

    // Every member leaves: those on n2 by closing, those on n1 by unsubscribing (their
    // connections stay open).
    for (((room, _), w), here) in rooms.iter().zip(watchers.iter_mut()).zip(&mut members) {
        let mut stay = Vec::new();
        for (i, mut cl) in std::mem::take(here).into_iter().enumerate() {
            if i % 2 == 1 {
                drop(cl);
                continue;
            }
            cl.send(json!({"type":"unsubscribe","channel":room})).await;
            assert_eq!(cl.next().await["type"], "unsubscribed");
            stay.push(cl);
        }
        // The leaves of the clients that closed, on n2, and of those that
        // unsubscribed, on n1: one event each.
        for _ in 0..users.len() {
            let e = w.next().await;
            assert_eq!(
                (e["type"].as_str(), e["channel"].as_str()),
                (Some("leave"), Some(room.as_str())),
                "{e}"
            );
        }
        wait_presence(&[n1, n2], room, &[w.id.clone()].into(), 1);
        *here = stay;
    }
    // Users of n2 closed every connection: offline on every master.
    let want: Vec<bool> = (0..names.len()).map(|i| i % 2 == 0).collect();
    let deadline = tokio::time::Instant::now() + WAIT;
    while online(n1, &names).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "online never became {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for n in [n1, n2] {
        assert_eq!(n.metric("pushgate_broker_presence_errors_total"), 0.0);
    }
}

/// A Redis Cluster master killed with SIGKILL: while its replica takes over, a member
/// joins and another leaves one of its channels (their writes fail); once the slot
/// map names the new master, every node puts its members again, and the one that
/// left expires within the TTL: both nodes list exactly the members again, on every
/// master's channels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_a_failed_master_s_channels_are_put_back_on_its_replica() {
    let _serial = SERIAL.lock().await;
    // A 3 s node timeout: the join and leave below happen well before the failover.
    let mut redis = RedisCluster::start(3000);
    let (nodes, _dir) = start_nodes(
        &redis.url(),
        &["redis_mode=cluster", "redis_timeout_ms=500"],
    );
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let rooms = redis.spread("room:f", 1);
    let mut members: Vec<Vec<Client>> = Vec::new();
    for (room, _) in &rooms {
        let mut here = Vec::new();
        for (i, user) in ["a", "b"].iter().enumerate() {
            let mut cl = Client::connect(&nodes[i], Some(user)).await;
            cl.subscribe(room, false).await;
            here.push(cl);
        }
        members.push(here);
    }
    let ids = |cs: &[Client]| cs.iter().map(|c| c.id.clone()).collect::<BTreeSet<_>>();
    for ((room, _), here) in rooms.iter().zip(&members) {
        wait_presence(&[n1, n2], room, &ids(here), 2);
    }

    let (room, victim) = rooms[0].clone();
    redis.node_mut(victim).kill();
    let errors_before = n2.metric("pushgate_broker_presence_errors_total");
    let mut late = Client::connect(n2, Some("late")).await;
    late.subscribe(&room, false).await;
    let gone = members[0].remove(0); // "a", on n1
    drop(gone);
    wait_for(|| n2.metric("pushgate_broker_presence_errors_total") > errors_before);
    members[0].push(late);

    wait_for_within(Duration::from_secs(60), || {
        redis
            .master_of(&format!("pushgate:ch:{{{room}}}"))
            .is_some_and(|m| m != victim)
    });
    for ((room, _), here) in rooms.iter().zip(&members) {
        let users = here.len() as u64;
        wait_presence(&[n1, n2], room, &ids(here), users);
    }
}
