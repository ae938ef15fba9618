//! What the cluster tests do with WebSocket clients and publications: a client that
//! follows channels and never reconnects ([`Follower`]), `POST /publish`, and the
//! checks made on what each client got.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::http_with;
use super::redis::{Node, WAIT};

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client (tokio-tungstenite) that follows channels; it never reconnects.
pub struct Follower {
    pub ws: Ws,
    /// The node it is on, for messages.
    pub name: String,
}

impl Follower {
    /// Connects to `node` and subscribes to `channels`.
    pub async fn start(node: &Node, channels: &[String]) -> Follower {
        Follower::start_since(node, channels, None).await.0
    }

    /// Connects and subscribes, from position `since` on the first channel if given;
    /// returns the `subscribed` reply too.
    pub async fn start_since(
        node: &Node,
        channels: &[String],
        since: Option<&Value>,
    ) -> (Follower, Value) {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", node.ws))
            .await
            .unwrap();
        let mut f = Follower {
            ws,
            name: node.id.clone(),
        };
        assert_eq!(f.next().await["type"], "connected");
        let mut cmd = json!({"type": "subscribe", "channels": channels});
        if let Some(p) = since {
            cmd["since"] = json!({ channels[0].as_str(): p });
        }
        f.ws.send(Message::text(cmd.to_string())).await.unwrap();
        let reply = f.next().await;
        assert_eq!(reply["type"], "subscribed", "{reply}");
        (f, reply)
    }

    /// The next text message (within [`WAIT`]).
    pub async fn next(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: no message in time", self.name))
                .expect("connection open (clients never reconnect)")
                .expect("a valid frame");
            if let Message::Text(t) = m {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }

    /// Every message until the publication whose data is `end` (inclusive).
    pub async fn until(&mut self, end: &str) -> Vec<Value> {
        let mut got = Vec::new();
        loop {
            let m = self.next().await;
            let done = m["data"] == end;
            got.push(m);
            if done {
                return got;
            }
        }
    }

    /// Publications until one whose data is `end` has arrived on each of `channels`
    /// (those left out).
    pub async fn until_each(&mut self, channels: &[String], end: &str) -> Vec<Value> {
        let mut got = Vec::new();
        let mut left: Vec<&String> = channels.iter().collect();
        while !left.is_empty() {
            let m = self.next().await;
            if m["data"] == end {
                left.retain(|c| m["channel"] != c.as_str());
            } else {
                got.push(m);
            }
        }
        got
    }

    /// Every publication until offset `last` (inclusive).
    pub async fn until_offset(&mut self, last: u64) -> Vec<Value> {
        let mut got = Vec::new();
        loop {
            let m = self.next().await;
            let done = m["offset"] == last;
            got.push(m);
            if done {
                return got;
            }
        }
    }
}

/// `POST /publish?channel=...`: the status (0 if the request failed).
pub fn publish(node: &Node, channel: &str, data: &str) -> u16 {
    let path = format!("/publish?channel={channel}");
    http_with(node.http, "POST", &path, &[], data.as_bytes()).map_or(0, |r| r.0)
}

/// Offsets strictly increase: nothing twice, in order.
#[track_caller]
pub fn offsets_increase(who: &str, msgs: &[&Value]) {
    for w in msgs.windows(2) {
        assert!(
            w[0]["offset"].as_u64() < w[1]["offset"].as_u64(),
            "{who}: {} then {}",
            w[0],
            w[1]
        );
    }
}

/// Publications carry consecutive offsets: each exactly once, in order.
#[track_caller]
pub fn consecutive(who: &str, msgs: &[Value]) {
    for w in msgs.windows(2) {
        let (a, b) = (w[0]["offset"].as_u64(), w[1]["offset"].as_u64());
        assert_eq!(
            b,
            a.map(|a| a + 1),
            "{who}: offsets not consecutive: {} then {}",
            w[0],
            w[1]
        );
    }
}

/// What a client got of a publisher's work: every accepted publication (`ok`), in
/// the order accepted; a refused one never.
#[track_caller]
pub fn got_every_accepted(who: &str, data: &[&str], ok: &[&str], refused: &[&str]) {
    let delivered_ok: Vec<&str> = data.iter().copied().filter(|d| ok.contains(d)).collect();
    assert_eq!(delivered_ok, ok, "{who}: accepted publications");
    assert!(
        data.iter().all(|d| !refused.contains(d)),
        "{who}: a refused publication was delivered"
    );
}
