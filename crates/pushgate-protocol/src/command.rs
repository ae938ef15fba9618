//! Client commands (small JSON text frames) and the server's replies.
//!
//! ```json
//! {"type":"subscribe","channels":["news","sport"],"id":1}
//! {"type":"subscribe","channels":["chat:1"],"since":{"chat:1":{"epoch":"x1","offset":41}}}
//! {"type":"subscribe","channels":["prices"],"latest":true}
//! {"type":"unsubscribe","channel":"news","id":"abc"}
//! {"type":"ping","id":2}
//! {"type":"refresh","token":"eyJhbGciOi...","id":3}
//! {"type":"subscribe","channels":["room:1"],"presence_events":true}
//! {"type":"presence","channel":"room:1","id":4}
//! ```
//! `id` is optional, any JSON number or string, and echoed in the reply.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::channel::{validate_channel, ChannelError};
use crate::position::Position;

/// The most channels one subscribe/unsubscribe command may name.
pub const MAX_CHANNELS_PER_COMMAND: usize = 100;

/// A parsed, validated client command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Subscribe {
        channels: Vec<String>,
        /// Positions to recover from, for history channels among `channels`.
        since: Vec<(String, Position)>,
        /// Send the newest kept publication of each history channel first.
        latest: bool,
        /// Send `join` / `leave` events of the presence channels among `channels`.
        presence_events: bool,
        id: Option<Value>,
    },
    Unsubscribe {
        channels: Vec<String>,
        id: Option<Value>,
    },
    Ping {
        id: Option<Value>,
    },
    /// A fresh connection token, replacing the one the connection was opened with.
    Refresh {
        token: String,
        id: Option<Value>,
    },
    /// Who is subscribed to a presence channel the connection follows.
    Presence {
        channel: String,
        id: Option<Value>,
    },
}

/// Why a command was refused. The connection stays open; the client gets an error reply.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CommandError {
    #[error("invalid JSON: {0}")]
    BadJson(String),
    #[error("unknown command type {0:?}")]
    UnknownType(String),
    #[error("no channels given")]
    NoChannels,
    #[error("more than {MAX_CHANNELS_PER_COMMAND} channels in one command")]
    TooManyChannels,
    #[error("channel {name:?}: {error}")]
    BadChannel { name: String, error: ChannelError },
    #[error("binary frames are not commands; send JSON text")]
    Binary,
    #[error("no token given")]
    NoToken,
    #[error("`since` names {0:?}, which is not among the channels subscribed")]
    SinceNotSubscribed(String),
    #[error("name exactly one channel")]
    OneChannel,
}

impl CommandError {
    /// A stable, machine-readable code for the error reply.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::BadJson(_) => "bad_json",
            CommandError::UnknownType(_) => "unknown_command",
            CommandError::NoChannels
            | CommandError::TooManyChannels
            | CommandError::NoToken
            | CommandError::SinceNotSubscribed(_)
            | CommandError::OneChannel => "bad_request",
            CommandError::BadChannel { .. } => "bad_channel",
            CommandError::Binary => "binary_not_supported",
        }
    }
}

#[derive(Deserialize)]
struct RawCommand {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    since: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    latest: bool,
    #[serde(default)]
    presence_events: bool,
}

impl Command {
    /// Parses and validates one command. On error, also returns the request id if
    /// one could be read, so the error reply can carry it.
    pub fn parse(text: &str) -> Result<Command, (CommandError, Option<Value>)> {
        let raw: RawCommand =
            serde_json::from_str(text).map_err(|e| (CommandError::BadJson(e.to_string()), None))?;
        let id = raw.id;
        let mut channels = raw.channels;
        channels.extend(raw.channel);
        let check = |channels: &Vec<String>| -> Result<(), CommandError> {
            if channels.is_empty() {
                return Err(CommandError::NoChannels);
            }
            if channels.len() > MAX_CHANNELS_PER_COMMAND {
                return Err(CommandError::TooManyChannels);
            }
            for name in channels {
                validate_channel(name).map_err(|error| CommandError::BadChannel {
                    name: name.clone(),
                    error,
                })?;
            }
            Ok(())
        };
        match raw.kind.as_str() {
            "subscribe" => match check(&channels).and_then(|()| since(raw.since, &channels)) {
                Ok(since) => Ok(Command::Subscribe {
                    channels,
                    since,
                    latest: raw.latest,
                    presence_events: raw.presence_events,
                    id,
                }),
                Err(e) => Err((e, id)),
            },
            "unsubscribe" => match check(&channels) {
                Ok(()) => Ok(Command::Unsubscribe { channels, id }),
                Err(e) => Err((e, id)),
            },
            "ping" => Ok(Command::Ping { id }),
            "presence" => match check(&channels) {
                Ok(()) if channels.len() == 1 => Ok(Command::Presence {
                    channel: channels.remove(0),
                    id,
                }),
                Ok(()) => Err((CommandError::OneChannel, id)),
                Err(e) => Err((e, id)),
            },
            "refresh" => match raw.token {
                Some(token) if !token.is_empty() => Ok(Command::Refresh { token, id }),
                _ => Err((CommandError::NoToken, id)),
            },
            other => Err((CommandError::UnknownType(other.to_owned()), id)),
        }
    }
}

/// The `since` member of a subscribe: every key must be one of the channels.
fn since(
    raw: Option<serde_json::Map<String, Value>>,
    channels: &[String],
) -> Result<Vec<(String, Position)>, CommandError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    raw.into_iter()
        .map(|(ch, v)| {
            if !channels.contains(&ch) {
                return Err(CommandError::SinceNotSubscribed(ch));
            }
            let pos: Position = serde_json::from_value(v)
                .map_err(|e| CommandError::BadJson(format!("since[{ch:?}]: {e}")))?;
            Ok((ch, pos))
        })
        .collect()
}

/// Positions of history channels, serialized as a JSON object in channel order.
#[derive(Debug, Clone, Copy)]
pub struct Positions<'a>(pub &'a [(String, Position)]);

impl Serialize for Positions<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (ch, pos) in self.0 {
            m.serialize_entry(ch, pos)?;
        }
        m.end()
    }
}

impl Positions<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A control message from the server (publications use [`crate::envelope`]).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Reply<'a> {
    /// First message on every connection.
    Connected {
        v: u32,
        conn: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
        heartbeat_ms: u64,
        /// Channels joined on connect (the token's `subscribe` claim); omitted when none.
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        channels: &'a [String],
    },
    /// `positions` (history channels only) is where each channel's stream is: every
    /// publication after that offset reaches the connection. With `since`, the channels
    /// whose gap was filled are `recovered`, the others `unrecovered`.
    Subscribed {
        channels: &'a [String],
        #[serde(skip_serializing_if = "Positions::is_empty")]
        positions: Positions<'a>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        recovered: &'a [String],
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        unrecovered: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
    /// The history of a followed channel was lost (a new epoch): publications continue
    /// after `offset`, but what came before cannot be recovered; reload state.
    Unrecoverable {
        channel: &'a str,
        epoch: &'a str,
        offset: u64,
    },
    Unsubscribed {
        channels: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
    /// A `refresh` was accepted: the connection now lives until `exp` (Unix seconds).
    /// `unsubscribed` lists channels the new token no longer allows (omitted when none).
    Refreshed {
        exp: u64,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        unsubscribed: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
    /// The connection's token has expired: send a `refresh` within `grace_ms`, or the
    /// connection is closed with 4003.
    #[serde(rename = "token_expired")]
    TokenExpired { grace_ms: u64 },
    Error {
        code: &'a str,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
}

impl Reply<'_> {
    /// Encodes the reply as a complete text frame.
    pub fn to_frame(&self) -> bytes::Bytes {
        let json = serde_json::to_vec(self).expect("replies always serialize");
        crate::frame::encode_frame(crate::frame::OpCode::Text, &json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_subscribe_forms() {
        assert_eq!(
            Command::parse(r#"{"type":"subscribe","channels":["a","b"],"id":1}"#),
            Ok(Command::Subscribe {
                channels: vec!["a".into(), "b".into()],
                since: vec![],
                latest: false,
                presence_events: false,
                id: Some(json!(1))
            })
        );
        assert_eq!(
            Command::parse(r#"{"type":"unsubscribe","channel":"a"}"#),
            Ok(Command::Unsubscribe {
                channels: vec!["a".into()],
                id: None
            })
        );
    }

    #[test]
    fn parses_recovery_options_and_refuses_a_stray_since() {
        let c = Command::parse(
            r#"{"type":"subscribe","channels":["b","a"],"since":{"b":{"epoch":"e","offset":7},"a":{"epoch":"f","offset":0}},"latest":true}"#,
        )
        .unwrap();
        let Command::Subscribe { since, latest, .. } = c else {
            panic!("{c:?}")
        };
        assert!(latest);
        assert_eq!(
            since,
            vec![
                (
                    "a".into(),
                    Position {
                        epoch: "f".into(),
                        offset: 0
                    }
                ),
                (
                    "b".into(),
                    Position {
                        epoch: "e".into(),
                        offset: 7
                    }
                ),
            ]
        );
        let (e, id) = Command::parse(
            r#"{"type":"subscribe","channels":["a"],"since":{"z":{"epoch":"e","offset":1}},"id":9}"#,
        )
        .unwrap_err();
        assert_eq!((e.code(), id), ("bad_request", Some(json!(9))));
        let (e, _) =
            Command::parse(r#"{"type":"subscribe","channels":["a"],"since":{"a":{"offset":-1}}}"#)
                .unwrap_err();
        assert_eq!(e.code(), "bad_json");
        let pos = [(
            "c".to_string(),
            Position {
                epoch: "e".into(),
                offset: 3,
            },
        )];
        let f = Reply::Subscribed {
            channels: &["c".into()],
            positions: Positions(&pos),
            recovered: &["c".into()],
            unrecovered: &[],
            id: None,
        }
        .to_frame();
        assert_eq!(
            &f[2..],
            br#"{"type":"subscribed","channels":["c"],"positions":{"c":{"epoch":"e","offset":3}},"recovered":["c"]}"#
        );
    }

    #[test]
    fn errors_carry_the_request_id() {
        let (e, id) =
            Command::parse(r#"{"type":"subscribe","channels":["bad name"],"id":"x"}"#).unwrap_err();
        assert_eq!(e.code(), "bad_channel");
        assert_eq!(id, Some(json!("x")));
        let (e, _) = Command::parse(r#"{"type":"dance","id":3}"#).unwrap_err();
        assert_eq!(e.code(), "unknown_command");
        let (e, _) = Command::parse("{not json").unwrap_err();
        assert_eq!(e.code(), "bad_json");
        let (e, _) = Command::parse(r#"{"type":"subscribe"}"#).unwrap_err();
        assert_eq!(e, CommandError::NoChannels);
        let (e, id) = Command::parse(r#"{"type":"refresh","id":4}"#).unwrap_err();
        assert_eq!((e.code(), id), ("bad_request", Some(json!(4))));
    }

    #[test]
    fn parses_presence_and_presence_events() {
        assert_eq!(
            Command::parse(r#"{"type":"presence","channel":"room:1","id":4}"#),
            Ok(Command::Presence {
                channel: "room:1".into(),
                id: Some(json!(4))
            })
        );
        let (e, _) = Command::parse(r#"{"type":"presence","channels":["a","b"]}"#).unwrap_err();
        assert_eq!(e, CommandError::OneChannel);
        let (e, _) = Command::parse(r#"{"type":"presence"}"#).unwrap_err();
        assert_eq!(e, CommandError::NoChannels);
        let c = Command::parse(r#"{"type":"subscribe","channel":"r","presence_events":true}"#);
        assert!(matches!(
            c,
            Ok(Command::Subscribe {
                presence_events: true,
                ..
            })
        ));
    }

    #[test]
    fn parses_refresh() {
        assert_eq!(
            Command::parse(r#"{"type":"refresh","token":"a.b.c","id":1}"#),
            Ok(Command::Refresh {
                token: "a.b.c".into(),
                id: Some(json!(1))
            })
        );
        let f = Reply::TokenExpired { grace_ms: 30000 }.to_frame();
        assert_eq!(&f[2..], br#"{"type":"token_expired","grace_ms":30000}"#);
    }

    #[test]
    fn replies_serialize_with_a_type_tag() {
        let f = Reply::Pong {
            id: Some(&json!(7)),
        }
        .to_frame();
        assert_eq!(&f[2..], br#"{"type":"pong","id":7}"#);
    }
}
