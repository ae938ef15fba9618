//! Pusher frames: what a client sends (`pusher:subscribe`, `pusher:ping`, client
//! events, ...) and what it is sent, and the envelope a Pusher event travels in
//! through the hub and the cluster.
//!
//! A Pusher event (name, data string, and for client events on presence channels the
//! sender's `user_id`) is published as a pushgate text payload holding exactly
//! `{"event":E,"data":D}` (plus `"user_id":U`): pushgate.v1 subscribers see that JSON
//! as the publication's data; Pusher subscribers get `{"event":E,"channel":C,"data":D}`.
//! Any other text payload (a pushgate.v1 publication) reaches Pusher subscribers as
//! event [`PUSHGATE_EVENT`] with the payload as its data. docs/pusher.md.

use std::borrow::Cow;

use bytes::Bytes;
use pushgate_protocol::{encode_frame, OpCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// The event name Pusher clients see for a pushgate.v1 publication.
pub const PUSHGATE_EVENT: &str = "pushgate:publication";
/// The longest event name (Pusher's limit).
pub const MAX_EVENT_LEN: usize = 200;

/// What a Pusher client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Subscribe {
        channel: String,
        auth: Option<String>,
        channel_data: Option<String>,
    },
    Unsubscribe {
        channel: String,
    },
    Ping,
    /// A `pusher:pong` (answer to a server's `pusher:ping`): only a sign of life.
    Pong,
    Signin {
        auth: String,
        user_data: String,
    },
    /// A `client-*` event; `data` as JSON text (a string's content when it was one).
    ClientEvent {
        event: String,
        channel: String,
        data: String,
    },
    /// A `pusher:*` event this server does not handle (ignored, as by Pusher).
    Unknown(String),
}

/// Why a client's message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("a message is a JSON object with an `event` string: {0}")]
    NotJson(String),
    #[error("{event}: missing or malformed `{field}`")]
    Field { event: String, field: &'static str },
    #[error("event {0:?} is neither a pusher: event nor a client- event")]
    BadEvent(String),
}

#[derive(Deserialize)]
struct Incoming {
    event: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    data: Value,
}

/// `data` as an object, whether it came as one or as a JSON string holding one.
fn object(data: Value) -> Value {
    match data {
        Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::Null),
        v => v,
    }
}

fn string_field(data: &Value, field: &str) -> Option<String> {
    data.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// Reads one text message of a Pusher client.
pub fn parse(text: &str) -> Result<ClientMessage, WireError> {
    let m: Incoming = serde_json::from_str(text).map_err(|e| WireError::NotJson(e.to_string()))?;
    let missing = |field| WireError::Field {
        event: m.event.clone(),
        field,
    };
    match m.event.as_str() {
        "pusher:subscribe" | "pusher:unsubscribe" | "pusher:signin" => {
            let data = object(m.data.clone());
            match m.event.as_str() {
                "pusher:subscribe" => Ok(ClientMessage::Subscribe {
                    channel: string_field(&data, "channel").ok_or_else(|| missing("channel"))?,
                    auth: string_field(&data, "auth"),
                    channel_data: string_field(&data, "channel_data"),
                }),
                "pusher:unsubscribe" => Ok(ClientMessage::Unsubscribe {
                    channel: string_field(&data, "channel").ok_or_else(|| missing("channel"))?,
                }),
                _ => Ok(ClientMessage::Signin {
                    auth: string_field(&data, "auth").ok_or_else(|| missing("auth"))?,
                    user_data: string_field(&data, "user_data")
                        .ok_or_else(|| missing("user_data"))?,
                }),
            }
        }
        "pusher:ping" => Ok(ClientMessage::Ping),
        "pusher:pong" => Ok(ClientMessage::Pong),
        e if e.starts_with("pusher:") || e.starts_with("pusher_internal:") => {
            Ok(ClientMessage::Unknown(m.event))
        }
        e if e.starts_with("client-") => {
            let channel = m.channel.clone().ok_or_else(|| missing("channel"))?;
            let data = match m.data {
                Value::String(s) => s,
                v => v.to_string(),
            };
            Ok(ClientMessage::ClientEvent {
                event: m.event,
                channel,
                data,
            })
        }
        _ => Err(WireError::BadEvent(m.event)),
    }
}

#[derive(Serialize)]
struct Outgoing<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: Data<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Data<'a> {
    /// Written as a JSON string (what Pusher sends for events).
    Text(&'a str),
    /// Written as a JSON object (Pusher's `pusher:error`, `pusher:subscription_error`).
    Object(Value),
}

fn frame(o: &Outgoing<'_>) -> Bytes {
    let json = serde_json::to_vec(o).expect("frames always serialize");
    encode_frame(OpCode::Text, &json)
}

/// An event whose data is a string: `{"event":E,"channel":C,"data":D}`.
pub fn event(event: &str, channel: Option<&str>, data: &str, user_id: Option<&str>) -> Bytes {
    frame(&Outgoing {
        event,
        channel,
        data: Data::Text(data),
        user_id,
    })
}

/// `pusher:connection_established`.
pub fn connection_established(socket_id: &str, activity_timeout: u64) -> Bytes {
    let data = serde_json::json!({"socket_id": socket_id, "activity_timeout": activity_timeout});
    event(
        "pusher:connection_established",
        None,
        &data.to_string(),
        None,
    )
}

/// `pusher:error` with one of Pusher's codes (`None` for errors that do not close).
pub fn error(code: Option<u16>, message: &str) -> Bytes {
    frame(&Outgoing {
        event: "pusher:error",
        channel: None,
        data: Data::Object(serde_json::json!({"message": message, "code": code})),
        user_id: None,
    })
}

/// `pusher:subscription_error` (`type` as pusher-js reports it, with an HTTP-like status).
pub fn subscription_error(channel: &str, kind: &str, message: &str, status: u16) -> Bytes {
    frame(&Outgoing {
        event: "pusher:subscription_error",
        channel: Some(channel),
        data: Data::Object(serde_json::json!({"type": kind, "error": message, "status": status})),
        user_id: None,
    })
}

/// `pusher_internal:subscription_succeeded` of a public or private channel.
pub fn subscription_succeeded(channel: &str) -> Bytes {
    event(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        "{}",
        None,
    )
}

/// One member of a presence channel, as Pusher clients know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    /// `user_info` as JSON text (`None`: absent).
    pub user_info: Option<String>,
}

/// `pusher_internal:subscription_succeeded` of a presence channel: its members, each
/// user once (the first of its connections gives its `user_info`).
pub fn presence_succeeded(channel: &str, members: &[Member]) -> Bytes {
    let mut ids: Vec<&str> = Vec::new();
    let mut hash = serde_json::Map::new();
    for m in members {
        if hash.contains_key(&m.user_id) {
            continue;
        }
        ids.push(&m.user_id);
        let info = m
            .user_info
            .as_deref()
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or(Value::Null);
        hash.insert(m.user_id.clone(), info);
    }
    let data = serde_json::json!({"presence": {"ids": ids, "hash": hash, "count": ids.len()}});
    event(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &data.to_string(),
        None,
    )
}

/// `pusher_internal:member_added` / `member_removed`.
pub fn member_event(added: bool, channel: &str, m: &Member) -> Bytes {
    let data = if added {
        let info = m
            .user_info
            .as_deref()
            .and_then(|i| serde_json::from_str(i).ok())
            .unwrap_or(Value::Null);
        serde_json::json!({"user_id": m.user_id, "user_info": info})
    } else {
        serde_json::json!({"user_id": m.user_id})
    };
    let name = if added {
        "pusher_internal:member_added"
    } else {
        "pusher_internal:member_removed"
    };
    event(name, Some(channel), &data.to_string(), None)
}

/// `pusher:signin_success`.
pub fn signin_success(user_data: &str) -> Bytes {
    let data = serde_json::json!({ "user_data": user_data });
    event("pusher:signin_success", None, &data.to_string(), None)
}

/// A Pusher event as it crosses the hub: a pushgate payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<'a> {
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    #[serde(borrow)]
    pub data: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Cow<'a, str>>,
}

impl<'a> Envelope<'a> {
    /// The pushgate payload text.
    pub fn to_payload(&self) -> String {
        serde_json::to_string(self).expect("envelopes always serialize")
    }

    /// Reads a payload written by [`Envelope::to_payload`]; `None` for any other text.
    pub fn read(text: &'a str) -> Option<Envelope<'a>> {
        if !text.starts_with('{') {
            return None; // cheap refusal of most pushgate.v1 payloads
        }
        serde_json::from_str(text).ok()
    }
}

/// The Pusher frame of a publication with text `payload` on Pusher channel `channel`
/// (`None`: a publication to all, users or connections).
pub fn publication(channel: Option<&str>, payload: &str) -> Bytes {
    match Envelope::read(payload) {
        Some(e) => event(&e.event, channel, &e.data, e.user_id.as_deref()),
        None => event(PUSHGATE_EVENT, channel, payload, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(frame: &Bytes) -> Value {
        let (_, at) = match frame[1] {
            126 => ((), 4),
            _ => ((), 2),
        };
        serde_json::from_slice(&frame[at..]).unwrap()
    }

    #[test]
    fn reads_what_pusher_js_sends() {
        let sub = r#"{"event":"pusher:subscribe","data":{"auth":"k:s","channel":"private-a"}}"#;
        assert_eq!(
            parse(sub),
            Ok(ClientMessage::Subscribe {
                channel: "private-a".into(),
                auth: Some("k:s".into()),
                channel_data: None
            })
        );
        let pres = r#"{"event":"pusher:subscribe","data":{"auth":"k:s","channel_data":"{\"user_id\":\"1\"}","channel":"presence-a"}}"#;
        assert!(
            matches!(parse(pres), Ok(ClientMessage::Subscribe { channel_data: Some(d), .. }) if d == r#"{"user_id":"1"}"#)
        );
        assert_eq!(
            parse(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(ClientMessage::Ping)
        );
        assert_eq!(
            parse(r#"{"event":"pusher:unsubscribe","data":{"channel":"a"}}"#),
            Ok(ClientMessage::Unsubscribe {
                channel: "a".into()
            })
        );
        // Data sent as a JSON string (some clients) is read the same.
        let s = r#"{"event":"pusher:subscribe","data":"{\"channel\":\"b\"}"}"#;
        assert!(matches!(parse(s), Ok(ClientMessage::Subscribe { channel, .. }) if channel == "b"));
        let ce = r#"{"event":"client-typing","channel":"private-a","data":{"who":"x"}}"#;
        assert_eq!(
            parse(ce),
            Ok(ClientMessage::ClientEvent {
                event: "client-typing".into(),
                channel: "private-a".into(),
                data: r#"{"who":"x"}"#.into()
            })
        );
        let signin =
            r#"{"event":"pusher:signin","data":{"auth":"k:s","user_data":"{\"id\":\"1\"}"}}"#;
        assert!(matches!(parse(signin), Ok(ClientMessage::Signin { .. })));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        assert!(matches!(parse("nope"), Err(WireError::NotJson(_))));
        assert!(matches!(
            parse(r#"{"event":"pusher:subscribe","data":{}}"#),
            Err(WireError::Field {
                field: "channel",
                ..
            })
        ));
        assert!(matches!(
            parse(r#"{"event":"hello","data":{}}"#),
            Err(WireError::BadEvent(_))
        ));
        assert!(matches!(
            parse(r#"{"event":"client-x","data":{}}"#),
            Err(WireError::Field {
                field: "channel",
                ..
            })
        ));
        assert_eq!(
            parse(r#"{"event":"pusher:cache_miss"}"#),
            Ok(ClientMessage::Unknown("pusher:cache_miss".into()))
        );
    }

    #[test]
    fn server_frames_have_pushers_shape() {
        let v = body(&connection_established("1.2", 120));
        assert_eq!(v["event"], "pusher:connection_established");
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["socket_id"], "1.2");
        assert_eq!(data["activity_timeout"], 120);
        let v = body(&error(Some(4001), "no app"));
        assert_eq!(v["data"]["code"], 4001);
        let v = body(&subscription_error("private-a", "AuthError", "bad", 401));
        assert_eq!(v["channel"], "private-a");
        assert_eq!(v["data"]["status"], 401);
        let v = body(&subscription_succeeded("a"));
        assert_eq!(
            (v["event"].as_str(), v["data"].as_str()),
            (Some("pusher_internal:subscription_succeeded"), Some("{}"))
        );
    }

    #[test]
    fn presence_lists_each_user_once() {
        let m = |u: &str, i: Option<&str>| Member {
            user_id: u.into(),
            user_info: i.map(Into::into),
        };
        let f = presence_succeeded(
            "presence-a",
            &[
                m("1", Some(r#"{"n":1}"#)),
                m("2", None),
                m("1", Some(r#"{"n":9}"#)),
            ],
        );
        let v = body(&f);
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["presence"]["count"], 2);
        assert_eq!(data["presence"]["ids"], serde_json::json!(["1", "2"]));
        assert_eq!(data["presence"]["hash"]["1"]["n"], 1);
        let v = body(&member_event(false, "presence-a", &m("2", None)));
        assert_eq!(v["data"], r#"{"user_id":"2"}"#);
    }

    #[test]
    fn envelopes_round_trip_and_other_payloads_get_the_pushgate_event() {
        let e = Envelope {
            event: "new-message".into(),
            data: r#"{"text":"hi \"you\""}"#.into(),
            user_id: None,
        };
        let payload = e.to_payload();
        assert_eq!(Envelope::read(&payload), Some(e));
        let v = body(&publication(Some("chat"), &payload));
        assert_eq!(v["event"], "new-message");
        assert_eq!(v["channel"], "chat");
        assert_eq!(v["data"], r#"{"text":"hi \"you\""}"#);
        let v = body(&publication(Some("chat"), "plain text"));
        assert_eq!(v["event"], PUSHGATE_EVENT);
        assert_eq!(v["data"], "plain text");
        // A JSON object with other members is a plain payload too.
        let other = r#"{"event":"x","data":"y","more":1}"#;
        assert_eq!(body(&publication(None, other))["data"], other);
    }
}
