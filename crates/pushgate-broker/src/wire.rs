//! How a publication crosses the bus: the Redis channel it goes to, and a compact
//! binary body (no JSON, no base64). The channel or user name travels in the Redis
//! channel name, so the body holds only what the key does not say:
//!
//! ```text
//! u8  version (1)
//! u8  flags: 1 = binary payload, 2 = has exclude
//! u8  origin node length, then the origin node id (a node ignores its own echo)
//! [exclude]  u8 node length, node id, u64 LE connection number
//! [node key] u32 LE count, then count × u64 LE connection numbers
//! payload (the rest)
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use pushgate_protocol::{ConnId, Payload};
use thiserror::Error;

const VERSION: u8 = 1;
const BINARY: u8 = 1;
const HAS_EXCLUDE: u8 = 2;

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

/// A decoded bus message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub origin: String,
    pub exclude: Option<NodeConn>,
    /// Connection numbers (node keys only).
    pub conns: Vec<ConnId>,
    pub payload: Payload,
}

/// A bus message this version cannot read.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("undecodable bus message: {0}")]
pub struct DecodeError(&'static str);

/// Encodes a message body. `conns` is written only for node keys (`for_node`).
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
    let mut out = BytesMut::with_capacity(16 + origin.len() + bytes.len());
    out.put_u8(VERSION);
    out.put_u8((u8::from(binary) * BINARY) | (u8::from(exclude.is_some()) * HAS_EXCLUDE));
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
    out.put_slice(bytes);
    out.freeze()
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
    let payload = if flags & BINARY != 0 {
        Payload::Binary(b)
    } else {
        Payload::Text(
            String::from_utf8(b.to_vec()).map_err(|_| DecodeError("text payload is not UTF-8"))?,
        )
    };
    Ok(Body {
        origin,
        exclude,
        conns,
        payload,
    })
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
            assert_eq!(body.payload, payload);
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
