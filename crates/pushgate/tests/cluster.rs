//! Several `pushgate` processes joined through a real `redis-server` (Redis 7, sharded
//! pub/sub), as docs/cluster.md describes: every target kind reaches every node
//! exactly once, a node follows only what its clients follow, a Redis outage is an
//! error for publishers and heals by itself, a dead node does not stop the others, and
//! a channel left and joined again within `unfollow_linger_ms` is never unfollowed.
//!
//! `redis-server` must be on the PATH: `make test` installs it (tests/deps.sh).

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use pushgate_grpc::pb::{self, pushgate_client::PushgateClient};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use support::follower::{publish, Follower};
use support::redis::{wait_for, Node, Redis, TempDir, WAIT};
use support::{http, http_with};

impl Node {
    /// The gRPC health status of `pushgate.v1.Pushgate`.
    async fn health(&self) -> i32 {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut h = tonic_health::pb::health_client::HealthClient::new(channel);
        let req = tonic_health::pb::HealthCheckRequest {
            service: "pushgate.v1.Pushgate".into(),
        };
        h.check(req).await.unwrap().into_inner().status
    }

    /// Waits until the health status is `want` (it follows the broker from a task).
    async fn health_becomes(&self, want: tonic_health::pb::health_check_response::ServingStatus) {
        let deadline = Instant::now() + WAIT;
        while self.health().await != want as i32 {
            assert!(Instant::now() < deadline, "health never became {want:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn grpc(&self) -> PushgateClient<tonic::transport::Channel> {
        PushgateClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client (tokio-tungstenite) on one node.
struct Client {
    ws: Ws,
    /// Its cluster-wide connection id, from the `connected` message.
    conn: String,
}

impl Client {
    async fn connect(node: &Node, user: Option<&str>, channels: &[&str]) -> Client {
        let mut req = format!("ws://{}/ws", node.ws)
            .into_client_request()
            .unwrap();
        if let Some(u) = user {
            req.headers_mut().insert("x-user", u.parse().unwrap());
        }
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let hello = next_json(&mut ws).await;
        let conn = hello["conn"].as_str().unwrap().to_owned();
        assert!(conn.starts_with(&format!("{}-", node.id)), "{conn}");
        if !channels.is_empty() {
            let cmd = serde_json::json!({"type": "subscribe", "channels": channels});
            ws.send(Message::text(cmd.to_string())).await.unwrap();
            let reply = next_json(&mut ws).await;
            assert_eq!(reply["type"], "subscribed", "{reply}");
        }
        Client { ws, conn }
    }

    /// The `data` of every publication until `end` (inclusive).
    async fn until(&mut self, end: &str) -> Vec<String> {
        let mut got = Vec::new();
        loop {
            let m = next_json(&mut self.ws).await;
            let data = m["data"].as_str().unwrap_or_default().to_owned();
            got.push(data.clone());
            if data == end {
                return got;
            }
        }
    }
}

async fn next_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("connection open")
            .expect("a valid frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

fn publication(target: pb::target::Kind, data: &str) -> pb::PublishRequest {
    pb::PublishRequest {
        publication: Some(pb::Publication {
            target: Some(pb::Target { kind: Some(target) }),
            exclude: String::new(),
            payload: Some(pb::publication::Payload::Text(data.into())),
        }),
    }
}

fn names(v: &[&str]) -> pb::Names {
    pb::Names {
        names: v.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_target_kind_reaches_every_node_exactly_once() {
    let redis = Redis::start();
    let nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|id| Node::start(id, &redis))
        .collect();
    // On each node: a follower of "news", a connection of alice, one of bob. Only
    // n2 has a follower of "sports".
    let mut news = Vec::new();
    let mut alice = Vec::new();
    let mut bob = Vec::new();
    for n in &nodes {
        news.push(Client::connect(n, None, &["news"]).await);
        alice.push(Client::connect(n, Some("alice"), &[]).await);
        bob.push(Client::connect(n, Some("bob"), &[]).await);
    }
    let mut sports = Client::connect(&nodes[1], None, &["sports"]).await;
    for (key, n) in [
        ("pushgate:ch:{news}", 3),
        ("pushgate:user:{alice}", 3),
        ("pushgate:ch:{sports}", 1),
    ] {
        wait_for(|| redis.subscribers(key) == Some(n));
    }

    let grpc = nodes[0].grpc().await;
    let publish = |target, data: &str| {
        let req = publication(target, data);
        let mut grpc = grpc.clone();
        async move { grpc.publish(req).await.unwrap().into_inner() }
    };
    use pb::target::Kind;
    let r = publish(Kind::All(true), "all-1").await;
    assert_eq!(r.nodes_accepted, 3);
    let r = publish(Kind::Channels(names(&["news"])), "news-1").await;
    assert_eq!(r.nodes_accepted, 3);
    assert_eq!(r.enqueued, 1, "n1's own follower of news");
    let r = publish(Kind::Users(names(&["alice"])), "alice-1").await;
    assert_eq!(r.nodes_accepted, 3);
    let r = publish(
        Kind::Conns(names(&[&news[1].conn, &alice[2].conn, &bob[0].conn])),
        "conns-1",
    )
    .await;
    assert_eq!(r.nodes_accepted, 3);
    assert_eq!(r.enqueued, 1, "bob's connection on n1");
    for i in 0..20 {
        let r = publish(Kind::Channels(names(&["sports"])), &format!("sports-{i}")).await;
        assert_eq!(
            (r.nodes_accepted, r.enqueued),
            (1, 0),
            "only n2 follows sports"
        );
    }
    // Excluding one connection on another node.
    let mut req = publication(Kind::Channels(names(&["news"])), "news-2");
    req.publication.as_mut().unwrap().exclude = news[2].conn.clone();
    grpc.clone().publish(req).await.unwrap();
    publish(Kind::All(true), "end").await;

    for (i, c) in news.iter_mut().enumerate() {
        let mut want = vec!["all-1", "news-1"];
        if i == 1 {
            want.push("conns-1");
        }
        if i != 2 {
            want.push("news-2");
        }
        want.push("end");
        assert_eq!(c.until("end").await, want, "news follower on node {i}");
    }
    for (i, c) in alice.iter_mut().enumerate() {
        let mut want = vec!["all-1", "alice-1"];
        if i == 2 {
            want.push("conns-1");
        }
        want.push("end");
        assert_eq!(c.until("end").await, want, "alice on node {i}");
    }
    for (i, c) in bob.iter_mut().enumerate() {
        let mut want = vec!["all-1"];
        if i == 0 {
            want.push("conns-1");
        }
        want.push("end");
        assert_eq!(c.until("end").await, want, "bob on node {i}");
    }
    let mut want: Vec<String> = vec!["all-1".into()];
    want.extend((0..20).map(|i| format!("sports-{i}")));
    want.push("end".into());
    assert_eq!(sports.until("end").await, want);

    // What crossed the bus, per node: n3 follows no sports, so it received none of the
    // 20; n2 received them all. The publisher (n1) received no channel traffic from
    // others, and its own echoes were ignored.
    let channel = "pushgate_broker_received_total{target=\"channel\"}";
    assert_eq!(nodes[2].metric(channel), 2.0, "n3: news-1 and news-2 only");
    assert_eq!(
        nodes[1].metric(channel),
        22.0,
        "n2: news-1, news-2 and 20 sports"
    );
    assert_eq!(nodes[0].metric(channel), 0.0);
    assert!(nodes[0].metric("pushgate_broker_echoes_total") >= 4.0);
    let published = nodes[0].metric("pushgate_broker_published_total");
    assert_eq!(published, 27.0, "one bus message per publication and key");

    // Cluster-wide stats from any node: 10 connections over 3 nodes.
    let deadline = Instant::now() + WAIT;
    loop {
        let s = nodes[2]
            .grpc()
            .await
            .stats(pb::StatsRequest {})
            .await
            .unwrap()
            .into_inner();
        if s.cluster_connections == 10 {
            assert_eq!(s.cluster.len(), 3);
            assert_eq!(s.connections, 3);
            break;
        }
        assert!(Instant::now() < deadline, "cluster stats: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Held by the test that kills its Redis and starts it again on the same port, and by
/// the linger test: a Redis started meanwhile could take that free port (seen once,
/// when the two ran side by side).
static SAME_PORT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_an_error_for_publishers_and_heals_by_itself() {
    let _port = SAME_PORT.lock().await;
    let mut redis = Redis::start();
    let port = redis.port;
    let n1 = Node::start("n1", &redis);
    let n2 = Node::start("n2", &redis);
    let mut far = Client::connect(&n2, None, &["news"]).await;
    wait_for(|| redis.subscribers("pushgate:ch:{news}") == Some(1));
    let mut grpc = n1.grpc().await;
    let news = || publication(pb::target::Kind::Channels(names(&["news"])), "before");
    grpc.publish(news()).await.unwrap();
    assert_eq!(far.until("before").await, vec!["before"]);

    drop(redis);
    // Publishers are told, on gRPC and HTTP, instead of losing publications.
    let deadline = Instant::now() + WAIT;
    loop {
        match grpc.publish(news()).await {
            Err(s) if s.code() == tonic::Code::Unavailable => {
                assert!(s.message().contains("broker"), "{s:?}");
                break;
            }
            // Written to Redis as it went away, not answered: "outcome unknown"
            // (docs/cluster.md) is the right answer for that one, not the one sought.
            Err(s) if s.code() == tonic::Code::DeadlineExceeded => {
                assert!(s.message().contains("outcome unknown"), "{s:?}");
                assert!(Instant::now() < deadline, "never refused: {s:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(s) => panic!("unexpected status {s:?}"),
            Ok(_) => {
                assert!(Instant::now() < deadline, "publications still accepted");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let (status, body) = http(n1.http, "POST", "/publish?channel=news", b"x").unwrap();
    assert_eq!(status, 503, "{body}");
    // An early answer (`Prefer: respond-async`) still waits for Redis to take it.
    let prefer = ["Prefer: respond-async"];
    let (status, body) =
        http_with(n1.http, "POST", "/publish?channel=news", &prefer, b"x").unwrap();
    assert_eq!(status, 503, "{body}");
    wait_for(|| !n1.ready() && !n2.ready());
    assert_eq!(n1.metric("pushgate_broker_up"), 0.0);
    use tonic_health::pb::health_check_response::ServingStatus;
    n2.health_becomes(ServingStatus::NotServing).await;

    redis = Redis::start_on(port, None);
    wait_for(|| n1.ready() && n2.ready());
    wait_for(|| redis.subscribers("pushgate:ch:{news}") == Some(1));
    let r = grpc
        .publish(publication(
            pb::target::Kind::Channels(names(&["news"])),
            "after",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.nodes_accepted, 1);
    // The client stayed connected through the outage and hears the news again.
    assert_eq!(far.until("after").await, vec!["after"]);
    let (status, body) =
        http_with(n1.http, "POST", "/publish?channel=news", &prefer, b"async").unwrap();
    assert_eq!((status, body.as_str()), (202, r#"{"nodes_accepted":1}"#));
    assert_eq!(far.until("async").await, vec!["async"]);
    assert!(n2.metric("pushgate_broker_reconnects_total{connection=\"subscriber\"}") >= 1.0);
    assert_eq!(n1.metric("pushgate_broker_up"), 1.0);
    n2.health_becomes(ServingStatus::Serving).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_leaves_the_others_delivering() {
    let redis = Redis::start();
    let n1 = Node::start("n1", &redis);
    let n2 = Node::start("n2", &redis);
    let n3 = Node::start("n3", &redis);
    let mut c1 = Client::connect(&n1, None, &["news"]).await;
    let _c2 = Client::connect(&n2, None, &["news"]).await;
    let mut c3 = Client::connect(&n3, None, &["news"]).await;
    wait_for(|| redis.subscribers("pushgate:ch:{news}") == Some(3));

    drop(n2); // SIGKILL: no drain, no goodbye to Redis
    wait_for(|| redis.subscribers("pushgate:ch:{news}") == Some(2));
    let r = n1
        .grpc()
        .await
        .publish(publication(
            pb::target::Kind::Channels(names(&["news"])),
            "still here",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.nodes_accepted, 2);
    assert_eq!(c1.until("still here").await, vec!["still here"]);
    assert_eq!(c3.until("still here").await, vec!["still here"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_stream_crosses_redis_in_batches_and_in_order() {
    let redis = Redis::start();
    let n1 = Node::start("n1", &redis);
    let n2 = Node::start("n2", &redis);
    let mut near = Client::connect(&n1, None, &["ticks"]).await;
    let mut far = Client::connect(&n2, None, &["ticks"]).await;
    wait_for(|| redis.subscribers("pushgate:ch:{ticks}") == Some(2));

    const N: u64 = 2000;
    let requests = (1..=N).map(|i| pb::PublishStreamRequest {
        seq: i,
        publication: publication(
            pb::target::Kind::Channels(names(&["ticks"])),
            &i.to_string(),
        )
        .publication,
        idempotency_key: String::new(),
    });
    let mut acks = n1
        .grpc()
        .await
        .publish_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut seq = 0;
    while let Some(ack) = acks.next().await {
        let ack = ack.unwrap();
        seq += 1;
        assert_eq!(ack.seq, seq, "acks in order");
        match ack.result.unwrap() {
            pb::publish_stream_reply::Result::Ok(r) => assert_eq!(r.nodes_accepted, 2),
            pb::publish_stream_reply::Result::Error(e) => panic!("item {seq}: {e:?}"),
        }
        if seq == N {
            break;
        }
    }
    let want: Vec<String> = (1..=N).map(|i| i.to_string()).collect();
    let last = N.to_string();
    assert_eq!(near.until(&last).await, want, "local clients, in order");
    assert_eq!(far.until(&last).await, want, "remote clients, in order");
    let published = n1.metric("pushgate_broker_published_total");
    let round_trips = n1.metric("pushgate_broker_round_trips_total");
    assert_eq!(published, N as f64);
    assert!(
        round_trips < published / 4.0,
        "a burst is batched: {published} publications in {round_trips} round trips"
    );
}

impl Client {
    /// Reads until the server's close frame; returns its code and reason.
    async fn closed(&mut self) -> (u16, String) {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a close in time")
                .expect("a close frame before the end")
                .expect("a valid frame");
            if let Message::Close(Some(f)) = m {
                return (f.code.into(), f.reason.to_string());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_calls_reach_every_node_of_a_user_or_connection() {
    let redis = Redis::start();
    let n1 = Node::start("n1", &redis);
    let n2 = Node::start("n2", &redis);
    let mut alice1 = Client::connect(&n1, Some("alice"), &[]).await;
    let mut alice2 = Client::connect(&n2, Some("alice"), &[]).await;
    let mut other = Client::connect(&n2, None, &[]).await;
    wait_for(|| redis.subscribers("pushgate:user:{alice}") == Some(2));
    let mut grpc = n1.grpc().await;
    let promo = || publication(pb::target::Kind::Channels(names(&["promo"])), "promo");

    // Subscribe a user on every node, and a connection of another node.
    let sub = |who| pb::SubscribeRequest {
        who: Some(who),
        channels: vec!["promo".into()],
    };
    let r = grpc
        .subscribe(sub(pb::subscribe_request::Who::User("alice".into())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.conns, r.nodes), (1, 2), "one connection here, two nodes");
    let r = grpc
        .subscribe(sub(pb::subscribe_request::Who::Conn(other.conn.clone())))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.conns, r.nodes), (0, 1), "the connection lives on n2");
    wait_for(|| redis.subscribers("pushgate:ch:{promo}") == Some(2));
    let r = grpc.publish(promo()).await.unwrap().into_inner();
    assert_eq!(r.nodes_accepted, 2);
    for c in [&mut alice1, &mut alice2, &mut other] {
        assert_eq!(c.until("promo").await, vec!["promo"]);
    }

    // Disconnect a user everywhere, then a connection of another node.
    let r = grpc
        .disconnect(pb::DisconnectRequest {
            who: Some(pb::disconnect_request::Who::User("alice".into())),
            code: 4010,
            reason: "banned".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.disconnected, r.nodes), (1, 2));
    assert_eq!(alice1.closed().await, (4010, "banned".into()));
    assert_eq!(alice2.closed().await, (4010, "banned".into()));
    let r = grpc
        .disconnect(pb::DisconnectRequest {
            who: Some(pb::disconnect_request::Who::Conn(other.conn.clone())),
            code: 0,
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.disconnected, r.nodes), (0, 1));
    assert_eq!(other.closed().await.0, 4002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_is_answered_once_the_cluster_subscription_is_in_place() {
    let redis = Redis::start();
    let n1 = Node::start("n1", &redis);
    let n2 = Node::start("n2", &redis);
    let mut c = Client::connect(&n2, None, &[]).await;
    // Redis holds every command for 2 s: n2's SSUBSCRIBE for the new channel waits.
    assert!(redis
        .command(&["CLIENT", "PAUSE", "2000", "ALL"])
        .unwrap()
        .starts_with("+OK"));
    c.ws.send(Message::text(
        r#"{"type":"subscribe","channels":["fresh"]}"#,
    ))
    .await
    .unwrap();
    c.ws.send(Message::text(r#"{"type":"ping"}"#))
        .await
        .unwrap();
    // The pong overtakes the held `subscribed`...
    assert_eq!(next_json(&mut c.ws).await["type"], "pong");
    // ...which arrives once Redis confirms; from then on, publications through any
    // node reach the client.
    assert_eq!(next_json(&mut c.ws).await["type"], "subscribed");
    let r = n1
        .grpc()
        .await
        .publish(publication(
            pb::target::Kind::Channels(names(&["fresh"])),
            "first",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.nodes_accepted, 1);
    assert_eq!(c.until("first").await, vec!["first"]);
}

/// `calls` of `cmd` in Redis's `INFO commandstats` (0 before the first).
fn calls(redis: &Redis, cmd: &str) -> u64 {
    let stats = redis.command_full(&["INFO", "commandstats"]).unwrap();
    let line = format!("cmdstat_{cmd}:calls=");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// Unsubscribes from `channel` and waits for the reply.
async fn unsubscribe(f: &mut Follower, channel: &str) {
    let cmd = serde_json::json!({"type": "unsubscribe", "channel": channel});
    f.ws.send(Message::text(cmd.to_string())).await.unwrap();
    assert_eq!(f.next().await["type"], "unsubscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_left_and_joined_within_the_linger_is_never_unfollowed() {
    let _port = SAME_PORT.lock().await;
    let redis = Redis::start();
    let key = "pushgate:ch:{room}";
    let room = ["room".to_owned()];
    // A linger far longer than the test, so that what happens inside it does not
    // depend on timing; the publisher node unfollows at once.
    let n1 = Node::start_with("l1", &redis, None, &["unfollow_linger_ms=600000"]);
    let n2 = Node::start_with("l2", &redis, None, &["unfollow_linger_ms=0"]);
    let mut f = Follower::start(&n1, &room).await;
    wait_for(|| redis.subscribers(key) == Some(1));
    let (ssubscribes, sunsubscribes) = (calls(&redis, "ssubscribe"), calls(&redis, "sunsubscribe"));

    // Left and joined again by the same client, then by a reconnecting one.
    unsubscribe(&mut f, "room").await;
    let f = {
        let cmd = serde_json::json!({"type": "subscribe", "channels": room});
        f.ws.send(Message::text(cmd.to_string())).await.unwrap();
        assert_eq!(f.next().await["type"], "subscribed");
        f
    };
    drop(f);
    let mut f = Follower::start(&n1, &room).await;
    assert_eq!(publish(&n2, "room", "through redis"), 200);
    assert_eq!(f.next().await["data"], "through redis");
    assert_eq!(redis.subscribers(key), Some(1));
    assert_eq!(
        calls(&redis, "ssubscribe"),
        ssubscribes,
        "no new SSUBSCRIBE"
    );
    assert_eq!(
        calls(&redis, "sunsubscribe"),
        sunsubscribes,
        "no SUNSUBSCRIBE"
    );

    // A short linger: once it is over with nobody back, the key is unfollowed.
    drop((f, n1));
    wait_for(|| redis.subscribers(key) == Some(0));
    let n3 = Node::start_with("l3", &redis, None, &["unfollow_linger_ms=200"]);
    let mut f = Follower::start(&n3, &room).await;
    wait_for(|| redis.subscribers(key) == Some(1));
    let sunsubscribes = calls(&redis, "sunsubscribe");
    unsubscribe(&mut f, "room").await;
    wait_for(|| redis.subscribers(key) == Some(0));
    assert_eq!(calls(&redis, "sunsubscribe"), sunsubscribes + 1);
    // ...and followed again by the next subscriber.
    let cmd = serde_json::json!({"type": "subscribe", "channels": room});
    f.ws.send(Message::text(cmd.to_string())).await.unwrap();
    assert_eq!(f.next().await["type"], "subscribed");
    assert_eq!(redis.subscribers(key), Some(1));
    assert_eq!(publish(&n2, "room", "again"), 200);
    assert_eq!(f.next().await["data"], "again");
}

/// A history channel left and joined again within the linger: the node kept following
/// it, so its copy of the stream has what was published meanwhile, and a subscribe
/// from the last position seen recovers it from the node (no `SSUBSCRIBE`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_channel_rejoined_within_the_linger_recovers_what_was_published_meanwhile() {
    let _port = SAME_PORT.lock().await;
    let redis = Redis::start();
    let dir = TempDir::new("linger-history");
    let config = dir.0.join("pushgate.toml");
    std::fs::write(
        &config,
        "[[history]]\nchannels = \"chat:*\"\nsize = 1000\nttl_ms = 600000\n",
    )
    .unwrap();
    let n1 = Node::start_with("h1", &redis, Some(&config), &["unfollow_linger_ms=600000"]);
    let n2 = Node::start_with("h2", &redis, Some(&config), &[]);
    let chat = ["chat:l".to_owned()];
    let (mut f, reply) = Follower::start_since(&n1, &chat, None).await;
    let epoch = reply["positions"]["chat:l"]["epoch"].clone();
    wait_for(|| redis.subscribers("pushgate:ch:{chat:l}") == Some(1));
    for i in 1..=3 {
        assert_eq!(publish(&n2, "chat:l", &format!("m{i}")), 200);
    }
    assert_eq!(f.until_offset(3).await.len(), 3);
    let ssubscribes = calls(&redis, "ssubscribe");

    drop(f);
    for i in 4..=5 {
        assert_eq!(publish(&n2, "chat:l", &format!("m{i}")), 200);
    }
    let since = serde_json::json!({"epoch": epoch, "offset": 3});
    let (mut f, reply) = Follower::start_since(&n1, &chat, Some(&since)).await;
    assert_eq!(reply["recovered"], serde_json::json!(["chat:l"]), "{reply}");
    let got = f.until("m5").await;
    let data: Vec<&str> = got.iter().map(|m| m["data"].as_str().unwrap()).collect();
    assert_eq!(data, ["m4", "m5"]);
    assert_eq!(
        calls(&redis, "ssubscribe"),
        ssubscribes,
        "no new SSUBSCRIBE"
    );
}
