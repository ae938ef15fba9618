//! How a publication crosses the bus: the Redis channel it goes to, and a compact
//! binary body (no JSON, no base64). The channel or user name travels in the Redis
//! channel name, so the body holds only what the key does not say:
//!
//! ```text
//! u8  version (1)
//! u8  flags: 1 = binary payload, 2 = has exclude, 4 = control (an operator's call)
//! u8  origin node length, then the origin node id (a node ignores its own echo)
//! [exclude]  u8 node length, node id, u64 LE connection number
//! [node key] u32 LE count, then count × u64 LE connection numbers
//! payload (the rest), or for a control message:
//!   u8 1 (disconnect), u16 LE close code, reason (the rest)
//!   u8 2 / 3 (subscribe / unsubscribe), u16 LE count, count × (u8 length, channel)
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use pushgate_protocol::{ConnId, Payload};
use thiserror::Error;

const VERSION: u8 = 1;
const BINARY: u8 = 1;
const HAS_EXCLUDE: u8 = 2;
const CONTROL: u8 = 4;

/// The bus channels of one deployment, all under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// What a bus channel carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind<'a> {
    All,
    Channel(&'a str),
    User(&'a str),
    /// Connection-targeted publications for one node.
    Node(&'a str),
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub fn all(&self) -> String {
        format!("{}:all", self.prefix)
    }

    pub fn node(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    pub fn channel(&self, ch: &str) -> String {
        format!("{}:ch:{ch}", self.prefix)
    }

    pub fn user(&self, user: &str) -> String {
        format!("{}:user:{user}", self.prefix)
    }

    /// The hash where live nodes report their counts (cluster stats).
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    pub fn for_interest(&self, k: &pushgate_hub::Key) -> String {
        match k {
            pushgate_hub::Key::Channel(c) => self.channel(c),
            pushgate_hub::Key::User(u) => self.user(u),
        }
    }

    /// What a bus channel name carries; `None` if it is not one of ours.
    pub fn parse<'a>(&self, key: &'a str) -> Option<KeyKind<'a>> {
        let rest = key.strip_prefix(self.prefix.as_str())?.strip_prefix(':')?;
        if rest == "all" {
            return Some(KeyKind::All);
        }
        let (kind, name) = rest.split_once(':')?;
        match kind {
            "ch" => Some(KeyKind::Channel(name)),
            "user" => Some(KeyKind::User(name)),
            "node" => Some(KeyKind::Node(name)),
            _ => None,
        }
    }
}

/// A connection anywhere in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeConn {
    pub node: String,
    pub id: ConnId,
}

impl NodeConn {
    /// Parses `<node>-<n>`.
    pub fn parse(s: &str) -> Option<NodeConn> {
        ConnId::parse(s).map(|(node, id)| NodeConn {
            node: node.to_owned(),
            id,
        })
    }
}

/// An operator's call carried to the nodes of a user or a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Close with this code and reason (already validated by the ingress).
    Disconnect { code: u16, reason: String },
    /// Follow these channels (already validated).
    Subscribe(Vec<String>),
    /// Stop following these channels.
    Unsubscribe(Vec<String>),
}

/// What a bus message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    Publication(Payload),
    Control(Control),
}

/// A decoded bus message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub origin: String,
    pub exclude: Option<NodeConn>,
    /// Connection numbers (node keys only).
    pub conns: Vec<ConnId>,
    pub what: What,
}

/// A bus message this version cannot read.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("undecodable bus message: {0}")]
pub struct DecodeError(&'static str);

/// Encodes a publication's body. `conns` is written only for node keys.
pub fn encode(
    origin: &str,
    exclude: Option<&NodeConn>,
    conns: Option<&[ConnId]>,
    payload: &Payload,
) -> Bytes {
    let (bytes, binary): (&[u8], bool) = match payload {
        Payload::Text(t) => (t.as_bytes(), false),
        Payload::Binary(b) => (b, true),
    };
    let flags = (u8::from(binary) * BINARY) | (u8::from(exclude.is_some()) * HAS_EXCLUDE);
    let mut out = header(origin, flags, exclude, conns, bytes.len());
    out.put_slice(bytes);
    out.freeze()
}

/// Encodes an operator's call. `conns` is written only for node keys.
pub fn encode_control(origin: &str, conns: Option<&[ConnId]>, c: &Control) -> Bytes {
    let mut out = header(origin, CONTROL, None, conns, 64);
    match c {
        Control::Disconnect { code, reason } => {
            out.put_u8(1);
            out.put_u16_le(*code);
            out.put_slice(reason.as_bytes());
        }
        Control::Subscribe(chs) | Control::Unsubscribe(chs) => {
            out.put_u8(if matches!(c, Control::Subscribe(_)) {
                2
            } else {
                3
            });
            out.put_u16_le(chs.len().min(u16::MAX as usize) as u16);
            for ch in chs.iter().take(u16::MAX as usize) {
                put_name(&mut out, ch);
            }
        }
    }
    out.freeze()
}

fn header(
    origin: &str,
    flags: u8,
    exclude: Option<&NodeConn>,
    conns: Option<&[ConnId]>,
    room: usize,
) -> BytesMut {
    let ids = conns.map_or(0, |c| 4 + 8 * c.len());
    let mut out = BytesMut::with_capacity(16 + origin.len() + ids + room);
    out.put_u8(VERSION);
    out.put_u8(flags);
    put_name(&mut out, origin);
    if let Some(x) = exclude {
        put_name(&mut out, &x.node);
        out.put_u64_le(x.id.0);
    }
    if let Some(ids) = conns {
        out.put_u32_le(ids.len() as u32);
        for id in ids {
            out.put_u64_le(id.0);
        }
    }
    out
}

/// Node ids are at most 64 bytes (checked by the config), so a u8 length suffices.
fn put_name(out: &mut BytesMut, s: &str) {
    let s = &s.as_bytes()[..s.len().min(255)];
    out.put_u8(s.len() as u8);
    out.put_slice(s);
}

fn get_name(b: &mut Bytes) -> Result<String, DecodeError> {
    if b.remaining() < 1 {
        return Err(DecodeError("truncated name"));
    }
    let n = b.get_u8() as usize;
    if b.remaining() < n {
        return Err(DecodeError("truncated name"));
    }
    String::from_utf8(b.split_to(n).to_vec()).map_err(|_| DecodeError("name is not UTF-8"))
}

/// Decodes a message body; `for_node` says whether it came on a node key.
pub fn decode(mut b: Bytes, for_node: bool) -> Result<Body, DecodeError> {
    if b.remaining() < 2 {
        return Err(DecodeError("truncated header"));
    }
    if b.get_u8() != VERSION {
        return Err(DecodeError("unknown version"));
    }
    let flags = b.get_u8();
    let origin = get_name(&mut b)?;
    let exclude = if flags & HAS_EXCLUDE != 0 {
        let node = get_name(&mut b)?;
        if b.remaining() < 8 {
            return Err(DecodeError("truncated exclude"));
        }
        Some(NodeConn {
            node,
            id: ConnId(b.get_u64_le()),
        })
    } else {
        None
    };
    let mut conns = Vec::new();
    if for_node {
        if b.remaining() < 4 {
            return Err(DecodeError("truncated connection list"));
        }
        let n = b.get_u32_le() as usize;
        if b.remaining() < n.saturating_mul(8) {
            return Err(DecodeError("truncated connection list"));
        }
        conns = (0..n).map(|_| ConnId(b.get_u64_le())).collect();
    }
    let what = if flags & CONTROL != 0 {
        What::Control(decode_control(b)?)
    } else if flags & BINARY != 0 {
        What::Publication(Payload::Binary(b))
    } else {
        What::Publication(Payload::Text(
            String::from_utf8(b.to_vec()).map_err(|_| DecodeError("text payload is not UTF-8"))?,
        ))
    };
    Ok(Body {
        origin,
        exclude,
        conns,
        what,
    })
}

fn decode_control(mut b: Bytes) -> Result<Control, DecodeError> {
    if b.remaining() < 3 {
        return Err(DecodeError("truncated control"));
    }
    let op = b.get_u8();
    let n = b.get_u16_le();
    match op {
        1 => Ok(Control::Disconnect {
            code: n,
            reason: String::from_utf8(b.to_vec())
                .map_err(|_| DecodeError("reason is not UTF-8"))?,
        }),
        2 | 3 => {
            let chs = (0..n).map(|_| get_name(&mut b)).collect::<Result<_, _>>()?;
            Ok(if op == 2 {
                Control::Subscribe(chs)
            } else {
                Control::Unsubscribe(chs)
            })
        }
        _ => Err(DecodeError("unknown control")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_shape() {
        let x = NodeConn {
            node: "node-b".into(),
            id: ConnId(7),
        };
        for (exclude, conns, payload) in [
            (None, None, Payload::Text("hi".into())),
            (
                Some(&x),
                None,
                Payload::Binary(Bytes::from_static(&[0, 255])),
            ),
            (
                None,
                Some(&[ConnId(1), ConnId(u64::MAX)][..]),
                Payload::Text(String::new()),
            ),
        ] {
            let b = encode("node-a", exclude, conns, &payload);
            let body = decode(b, conns.is_some()).unwrap();
            assert_eq!(body.origin, "node-a");
            assert_eq!(body.exclude.as_ref(), exclude);
            assert_eq!(body.conns, conns.unwrap_or_default());
            assert_eq!(body.what, What::Publication(payload));
        }
    }

    #[test]
    fn control_messages_round_trip() {
        for c in [
            Control::Disconnect {
                code: 4010,
                reason: "banned".into(),
            },
            Control::Subscribe(vec!["a".into(), "b:c".into()]),
            Control::Unsubscribe(vec![]),
        ] {
            let b = encode_control("n1", Some(&[ConnId(5)]), &c);
            let body = decode(b.clone(), true).unwrap();
            assert_eq!((body.conns, body.what), (vec![ConnId(5)], What::Control(c)));
            for cut in 0..b.len() {
                let _ = decode(b.slice(..cut), true); // never panics
            }
        }
    }

    #[test]
    fn a_small_publication_costs_a_few_bytes_of_framing() {
        let b = encode("n1", None, None, &Payload::Text("x".repeat(100)));
        assert_eq!(b.len(), 100 + 5);
    }

    #[test]
    fn truncated_or_foreign_bodies_are_errors_not_panics() {
        let full = encode("n1", None, Some(&[ConnId(3)]), &Payload::Text("abc".into()));
        for cut in 0..full.len() - 3 {
            assert!(decode(full.slice(..cut), true).is_err(), "cut {cut}");
        }
        assert!(decode(Bytes::from_static(b"\x09\x00"), false).is_err());
    }

    #[test]
    fn keys_parse_back() {
        let k = Keys::new("pg");
        assert_eq!(k.parse(&k.all()), Some(KeyKind::All));
        assert_eq!(k.parse(&k.channel("a:b")), Some(KeyKind::Channel("a:b")));
        assert_eq!(k.parse(&k.user("u")), Some(KeyKind::User("u")));
        assert_eq!(k.parse(&k.node("n-1")), Some(KeyKind::Node("n-1")));
        assert_eq!(k.parse("other:all"), None);
        assert_eq!(k.parse("pgx:all"), None);
    }
}
