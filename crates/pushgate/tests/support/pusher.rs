//! Pusher clients and API calls for the cluster tests (`pusher_*cluster.rs`): a
//! tokio-tungstenite client speaking Pusher's frames ([`Pc`]), and HTTP API requests
//! signed as the server SDKs sign them ([`pusher_api`]).

use futures_util::{SinkExt, StreamExt};
use pushgate_pusher::api::{body_md5, sign};
use pushgate_pusher::{auth, PusherApp};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::http;
use super::redis::{Node, WAIT};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn app() -> PusherApp {
    PusherApp {
        id: "1".into(),
        key: "k".into(),
        secret: "s".into(),
        client_events: true,
        ..PusherApp::default()
    }
}

pub const CONFIG: &str =
    "[[pusher_apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nclient_events = true\n";

pub struct Pc {
    pub ws: Ws,
    pub socket_id: String,
}

/// The next Pusher message (pings skipped), `data` parsed when it is a JSON string.
pub async fn next(ws: &mut Ws) -> Value {
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

pub async fn connect(node: &Node) -> Pc {
    let url = format!("ws://{}/app/k?protocol=7&client=js&version=8.4.0", node.ws);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let m = next(&mut ws).await;
    assert_eq!(m["event"], "pusher:connection_established", "{m}");
    let socket_id = m["data"]["socket_id"].as_str().unwrap().to_owned();
    Pc { ws, socket_id }
}

pub async fn send(c: &mut Pc, v: Value) {
    c.ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Subscribes with the app's signature; returns `subscription_succeeded`.
pub async fn subscribe(c: &mut Pc, channel: &str, user: Option<&str>) -> Value {
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
pub fn members(n: &Node, channel: &str) -> usize {
    let path = format!("/presence?channel={}", channel.replace('/', "%2F"));
    let (status, body) = http(n.http, "GET", &path, b"").expect("GET /presence");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["clients"].as_array().map_or(0, Vec::len)
}

/// A Pusher HTTP API request to node `n`, signed as the server SDKs sign it (values
/// here need no URL escaping); the status and body.
pub fn pusher_api(
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
