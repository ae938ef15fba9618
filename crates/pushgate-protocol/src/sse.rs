//! Server-Sent Events: how publications reach a client of `GET /sse` (docs/protocol.md,
//! "Server-Sent Events").
//!
//! - A publication to a channel is an event of type `<channel>`; one to all, a user or
//!   a connection has no `event:` line (type `message`). Its text is split into `data:`
//!   lines at every CR, LF or CRLF, so the client's `event.data` is the payload with
//!   line breaks as LF.
//! - A binary publication is an event of type [`BINARY`] whose data is JSON:
//!   `{"channel":"c","data":"<base64, standard alphabet, padded>"}` (`channel` absent
//!   without one).
//! - On a history channel the event starts with `id: <channel>:<epoch>:<offset>`. A
//!   stream that follows several history channels gets ids that list all of them
//!   ([`Cursor`]); the edge writes those per connection, the rest of the event is the
//!   bytes shared by every SSE recipient.
//! - Control events have types starting with `#`, which no channel name can.
//!
//! [`from_ws`] turns a server WebSocket frame of the publication envelope (or an
//! `unrecoverable` notice) into the event: the hub encodes an SSE publication from its
//! WebSocket frame once, and the edge converts recovered publications the same way.

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::envelope::split_header;
use crate::position::{Position, POSITIONED_BINARY};
use crate::validate_channel;

/// A heartbeat: an SSE comment, ignored by clients.
pub const HEARTBEAT: &[u8] = b":\n\n";
/// First event of every stream: `{"type":"connected","conn":…,"heartbeat_ms":…}`.
pub const CONNECTED: &str = "#connected";
/// The answer to the stream's subscribe: positions, recovered and unrecovered channels.
pub const SUBSCRIBED: &str = "#subscribed";
/// A channel whose missed publications cannot be recovered: reload its state.
pub const UNRECOVERABLE: &str = "#unrecoverable";
/// A binary publication, its payload in base64.
pub const BINARY: &str = "#binary";
/// Last event before the server ends the stream: `{"code":1001,"reason":"shutdown"}`.
pub const CLOSE: &str = "#close";

/// Encodes one event. `data` is split into `data:` lines at CR, LF and CRLF; the
/// event ends with its blank line.
pub fn encode_event(id: Option<&str>, event: Option<&str>, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + data.len() / 16 + 64);
    if let Some(id) = id {
        put_field(&mut out, "id", id);
    }
    if let Some(event) = event {
        put_field(&mut out, "event", event);
    }
    put_data(&mut out, data);
    out.put_u8(b'\n');
    out.freeze()
}

fn put_field(out: &mut BytesMut, name: &str, value: &str) {
    debug_assert!(!value.contains(['\n', '\r']), "{name} holds one line");
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_u8(b'\n');
}

/// `data:` lines for `text` (one, empty, for an empty text).
fn put_data(out: &mut BytesMut, text: &str) {
    let mut rest = text;
    loop {
        let (line, next) = match rest.find(['\r', '\n']) {
            None => (rest, None),
            Some(i) => {
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                (&rest[..i], Some(&rest[i + skip..]))
            }
        };
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
        match next {
            Some(n) => rest = n,
            None => return,
        }
    }
}

/// The id entry of one channel's position: `<channel>:<epoch>:<offset>`.
pub fn id_entry(channel: &str, epoch: &str, offset: u64) -> String {
    format!("{channel}:{epoch}:{offset}")
}

/// The event for a server WebSocket frame carrying a publication (any envelope of
/// [`crate::envelope`]) or an `unrecoverable` notice; `epoch` gives the epoch of a
/// positioned publication's channel (no `id:` line without one). `None` for any other
/// frame.
pub fn from_ws<'e>(frame: &[u8], epoch: impl FnOnce(&str) -> Option<&'e str>) -> Option<Bytes> {
    let (opcode, body) = split_header(frame)?;
    match opcode {
        0x1 => from_json(body, epoch),
        0x2 => {
            let (positioned, rest) = match body.split_first()? {
                (&POSITIONED_BINARY, rest) => (true, rest),
                _ => (false, body),
            };
            let (&len, rest) = rest.split_first()?;
            let channel = std::str::from_utf8(rest.get(..len as usize)?).ok()?;
            let rest = &rest[len as usize..];
            let (offset, data) = if positioned {
                let (o, d) = (rest.get(..8)?, &rest[8..]);
                (Some(u64::from_be_bytes(o.try_into().ok()?)), d)
            } else {
                (None, rest)
            };
            let channel = (!channel.is_empty()).then_some(channel);
            let id = position_id(channel, offset, epoch);
            let mut json = serde_json::Map::new();
            if let Some(c) = channel {
                json.insert("channel".into(), c.into());
            }
            let b64 = base64::engine::general_purpose::STANDARD.encode(data);
            json.insert("data".into(), b64.into());
            let data = serde_json::Value::Object(json).to_string();
            Some(encode_event(id.as_deref(), Some(BINARY), &data))
        }
        _ => None,
    }
}

fn position_id<'e>(
    channel: Option<&str>,
    offset: Option<u64>,
    epoch: impl FnOnce(&str) -> Option<&'e str>,
) -> Option<String> {
    let (c, o) = (channel?, offset?);
    Some(id_entry(c, epoch(c)?, o))
}

fn from_json<'e>(body: &[u8], epoch: impl FnOnce(&str) -> Option<&'e str>) -> Option<Bytes> {
    #[derive(serde::Deserialize)]
    struct Frame {
        #[serde(rename = "type")]
        kind: String,
        channel: Option<String>,
        offset: Option<u64>,
        epoch: Option<String>,
        data: Option<String>,
    }
    let f: Frame = serde_json::from_slice(body).ok()?;
    match f.kind.as_str() {
        "pub" => {
            let id = position_id(f.channel.as_deref(), f.offset, epoch);
            Some(encode_event(id.as_deref(), f.channel.as_deref(), &f.data?))
        }
        "unrecoverable" => {
            let (channel, epoch, offset) = (f.channel?, f.epoch?, f.offset?);
            let id = id_entry(&channel, &epoch, offset);
            let data = serde_json::json!({"channel": channel, "epoch": epoch, "offset": offset});
            Some(encode_event(
                Some(&id),
                Some(UNRECOVERABLE),
                &data.to_string(),
            ))
        }
        _ => None,
    }
}

/// The positions an event id names, one per history channel (`Last-Event-ID`, `?since=`).
///
/// Written `<channel>:<epoch>:<offset>` per channel, joined by `,`. Channel names may
/// hold `:` (never `,`), so an entry is split at its last two colons; epochs hold
/// neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(pub Vec<(String, Position)>);

/// Why an event id is not a [`Cursor`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CursorError {
    #[error("entry {0:?} is not <channel>:<epoch>:<offset>")]
    Malformed(String),
    #[error("entry {0:?}: the offset is not a number")]
    BadOffset(String),
    #[error("entry {0:?}: {1}")]
    BadChannel(String, crate::ChannelError),
    #[error("more than {0} entries")]
    TooMany(usize),
}

impl Cursor {
    /// Parses an id; an empty one is an empty cursor. At most `max` entries.
    pub fn parse(id: &str, max: usize) -> Result<Cursor, CursorError> {
        let mut out = Vec::new();
        for entry in id.trim().split(',').filter(|e| !e.is_empty()) {
            if out.len() == max {
                return Err(CursorError::TooMany(max));
            }
            let shown = || entry.chars().take(64).collect::<String>();
            let mut parts = entry.rsplitn(3, ':');
            let (Some(offset), Some(epoch), Some(channel)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(CursorError::Malformed(shown()));
            };
            if epoch.is_empty() || epoch.contains(char::is_whitespace) {
                return Err(CursorError::Malformed(shown()));
            }
            let offset = offset
                .parse::<u64>()
                .map_err(|_| CursorError::BadOffset(shown()))?;
            validate_channel(channel).map_err(|e| CursorError::BadChannel(shown(), e))?;
            let position = Position {
                epoch: epoch.to_owned(),
                offset,
            };
            match out
                .iter_mut()
                .find(|(c, _): &&mut (String, Position)| c == channel)
            {
                Some(slot) => slot.1 = position,
                None => out.push((channel.to_owned(), position)),
            }
        }
        Ok(Cursor(out))
    }

    /// Sets one channel's position (added at the end if it is new).
    pub fn set(&mut self, channel: &str, epoch: &str, offset: u64) {
        match self.0.iter_mut().find(|(c, _)| c == channel) {
            Some((_, p)) => {
                if p.epoch != epoch {
                    p.epoch = epoch.to_owned();
                }
                p.offset = offset;
            }
            None => self.0.push((
                channel.to_owned(),
                Position {
                    epoch: epoch.to_owned(),
                    offset,
                },
            )),
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (c, p)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{c}:{}:{}", p.epoch, p.offset)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_positioned, encode_publication, Payload, Reply};

    fn text(b: &Bytes) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn data_is_split_at_every_line_break() {
        let e = encode_event(None, Some("news"), "a\r\nb\nc\rd\n");
        assert_eq!(
            text(&e),
            "event: news\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"
        );
        assert_eq!(text(&encode_event(None, None, "")), "data: \n\n");
        assert_eq!(text(&encode_event(None, None, " x")), "data:  x\n\n");
    }

    #[test]
    fn publications_convert_from_their_websocket_frames() {
        let t = Payload::Text("hi\nthere".into());
        let e = from_ws(&encode_publication(Some("news"), &t), |_| None).unwrap();
        assert_eq!(text(&e), "event: news\ndata: hi\ndata: there\n\n");
        let e = from_ws(&encode_publication(None, &t), |_| None).unwrap();
        assert_eq!(text(&e), "data: hi\ndata: there\n\n");
        let e = from_ws(&encode_positioned("chat:1", 7, &t), |c| {
            (c == "chat:1").then_some("e1")
        })
        .unwrap();
        assert_eq!(
            text(&e),
            "id: chat:1:e1:7\nevent: chat:1\ndata: hi\ndata: there\n\n"
        );
        let b = Payload::Binary(Bytes::from_static(&[0, 1, 255]));
        let e = from_ws(&encode_positioned("c", 2, &b), |_| Some("e")).unwrap();
        assert_eq!(
            text(&e),
            "id: c:e:2\nevent: #binary\ndata: {\"channel\":\"c\",\"data\":\"AAH/\"}\n\n"
        );
        let e = from_ws(&encode_publication(None, &b), |_| None).unwrap();
        assert_eq!(text(&e), "event: #binary\ndata: {\"data\":\"AAH/\"}\n\n");
        let n = Reply::Unrecoverable {
            channel: "c",
            epoch: "E2",
            offset: 9,
        }
        .to_frame();
        assert_eq!(
            text(&from_ws(&n, |_| None).unwrap()),
            "id: c:E2:9\nevent: #unrecoverable\ndata: {\"channel\":\"c\",\"epoch\":\"E2\",\"offset\":9}\n\n"
        );
        assert_eq!(from_ws(&[0x89, 0], |_| None), None, "a ping is no event");
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor::parse("chat:1:abc:7,prices:e:0", 10).unwrap();
        assert_eq!(c.0[0].0, "chat:1");
        assert_eq!(c.0[0].1.epoch, "abc");
        assert_eq!(c.0[0].1.offset, 7);
        assert_eq!(c.to_string(), "chat:1:abc:7,prices:e:0");
        assert_eq!(Cursor::parse("", 10), Ok(Cursor::default()));
        assert!(matches!(
            Cursor::parse("x:1", 10),
            Err(CursorError::Malformed(_))
        ));
        assert!(matches!(
            Cursor::parse("x:e:z", 10),
            Err(CursorError::BadOffset(_))
        ));
        assert!(matches!(
            Cursor::parse("a b:e:1", 10),
            Err(CursorError::BadChannel(..))
        ));
        assert!(matches!(
            Cursor::parse("a:e:1,b:e:1", 1),
            Err(CursorError::TooMany(1))
        ));
        let mut c = Cursor::parse("a:e:1", 10).unwrap();
        c.set("b", "f", 3);
        c.set("a", "e", 2);
        assert_eq!(c.to_string(), "a:e:2,b:f:3");
    }
}
