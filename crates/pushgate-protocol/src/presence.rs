//! Presence on the wire: who is subscribed to a channel (`presence` replies, the
//! internal HTTP `GET /presence` body) and the `join` / `leave` events sent to
//! subscribers that asked for them.
//!
//! ```json
//! {"type":"join","channel":"room:1","conn":"n1-7","user":"alice","info":{"name":"Alice"}}
//! {"type":"leave","channel":"room:1","conn":"n1-7","user":"alice"}
//! {"type":"presence","channel":"room:1","clients":[{"conn":"n1-7","user":"alice"}],"users":1,"clients_count":1,"id":4}
//! ```
//!
//! `info` is the JSON value of the connection token's `info` claim, copied as it was
//! verified; it is kept as JSON text and written out as is (never parsed again).

use bytes::Bytes;
use serde_json::Value;

use crate::frame::{encode_frame, OpCode};

/// One subscriber of a presence channel, anywhere in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PresenceClient {
    /// Its connection id (`<node>-<n>`).
    pub conn: String,
    /// Its user, when it has one.
    pub user: Option<String>,
    /// The token's `info` claim as JSON text, when it had one.
    pub info: Option<String>,
}

/// Whether an event tells of a subscriber joining or leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceEvent {
    Join,
    Leave,
}

/// The frame of a `join` or `leave` event (encoded once, sent to every watcher).
pub fn encode_event(kind: PresenceEvent, channel: &str, client: &PresenceClient) -> Bytes {
    let mut out = String::with_capacity(64 + channel.len());
    out.push_str(match kind {
        PresenceEvent::Join => r#"{"type":"join","channel":"#,
        PresenceEvent::Leave => r#"{"type":"leave","channel":"#,
    });
    push_str(&mut out, channel);
    out.push(',');
    push_client_fields(&mut out, client);
    out.push('}');
    encode_frame(OpCode::Text, out.as_bytes())
}

/// The JSON object `{"channel":…,"clients":[…],"users":N,"clients_count":N}`, with a
/// `type` and `id` for a client's `presence` reply (`reply: Some(id)`).
pub fn presence_json(
    channel: &str,
    clients: &[PresenceClient],
    reply: Option<Option<&Value>>,
) -> String {
    let mut out = String::with_capacity(64 + 48 * clients.len());
    out.push('{');
    if reply.is_some() {
        out.push_str(r#""type":"presence","#);
    }
    out.push_str(r#""channel":"#);
    push_str(&mut out, channel);
    out.push_str(r#","clients":["#);
    for (i, c) in clients.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        push_client_fields(&mut out, c);
        out.push('}');
    }
    out.push_str(&format!(
        r#"],"users":{},"clients_count":{}"#,
        distinct_users(clients),
        clients.len()
    ));
    if let Some(Some(id)) = reply {
        out.push_str(r#","id":"#);
        out.push_str(&id.to_string());
    }
    out.push('}');
    out
}

/// Distinct users among `clients` (connections without a user are not counted).
pub fn distinct_users(clients: &[PresenceClient]) -> usize {
    let mut users: Vec<&str> = clients.iter().filter_map(|c| c.user.as_deref()).collect();
    users.sort_unstable();
    users.dedup();
    users.len()
}

fn push_client_fields(out: &mut String, c: &PresenceClient) {
    out.push_str(r#""conn":"#);
    push_str(out, &c.conn);
    if let Some(u) = &c.user {
        out.push_str(r#","user":"#);
        push_str(out, u);
    }
    if let Some(info) = &c.info {
        out.push_str(r#","info":"#);
        out.push_str(info);
    }
}

fn push_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string always serializes"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(conn: &str, user: Option<&str>, info: Option<&str>) -> PresenceClient {
        PresenceClient {
            conn: conn.into(),
            user: user.map(Into::into),
            info: info.map(Into::into),
        }
    }

    #[test]
    fn events_and_replies_are_json_with_info_spliced_in() {
        let f = encode_event(
            PresenceEvent::Join,
            "room:\"1\"",
            &client("n1-7", Some("alice"), Some(r#"{"name":"A"}"#)),
        );
        let v: Value = serde_json::from_slice(&f[2..]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"join","channel":"room:\"1\"","conn":"n1-7","user":"alice","info":{"name":"A"}})
        );
        let clients = [
            client("n1-1", Some("a"), None),
            client("n2-1", Some("a"), None),
            client("n2-2", None, None),
        ];
        let s = presence_json("c", &clients, Some(Some(&serde_json::json!(4))));
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["type"], "presence");
        assert_eq!(
            (v["users"].as_u64(), v["clients_count"].as_u64()),
            (Some(1), Some(3))
        );
        assert_eq!(v["id"], 4);
        assert_eq!(v["clients"][2], serde_json::json!({"conn":"n2-2"}));
        let s = presence_json("c", &[], None);
        assert_eq!(
            s,
            r#"{"channel":"c","clients":[],"users":0,"clients_count":0}"#
        );
    }
}
