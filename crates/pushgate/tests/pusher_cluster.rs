//! The Pusher protocol across nodes joined through a real `redis-server`: a pushgate.v1
//! publication on one node reaches Pusher subscribers of the other; a client event
//! crosses nodes (and is not echoed); presence members are listed and announced across
//! nodes (docs/pusher.md). Clients are tokio-tungstenite speaking Pusher's frames.
//!
//! `redis-server` must be on the PATH: `make test` installs it (tests/deps.sh).

mod support;

use futures_util::{SinkExt, StreamExt};
use pushgate_pusher::{auth, PusherApp};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use support::http;
use support::redis::{wait_for, Node, Redis, TempDir, WAIT};

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
