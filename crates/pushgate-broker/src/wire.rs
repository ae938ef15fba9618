//! How a publication crosses the bus: the Redis channel it goes to, and a compact
//! binary body (no JSON, no base64). The channel or user name travels in the Redis
//! channel name, so the body holds only what the key does not say:
//!
//! ```text
//! u8  version (1)
//! u8  flags: 1 = binary payload, 2 = has exclude, 4 = control (an operator's call),
//!            8 = positioned (a history channel's publication), 16 = echo (the origin
//!            delivers it from the bus too)
//! u8  origin node length, then the origin node id (a node ignores its own echo
//!     unless flag 8 or 16 is set)
//! [exclude]     u8 node length, node id, u64 LE connection number
//! [node key]    u32 LE count, then count × u64 LE connection numbers
//! [positioned]  u8 epoch length, epoch, u64 LE offset (written by the Redis script
//!               that assigns them)
//! payload (the rest), or for a control message:
//!   u8 1 (disconnect), u16 LE close code, reason (the rest)
//!   u8 2 / 3 (subscribe / unsubscribe), u16 LE count, count × (u8 length, channel)
//!   u8 4 / 5 (presence join / leave, on a channel's key), u16 LE flags (1 = judged:
//!   the next bit is the cluster's judgement, 2 = the user's first join / last leave
//!   in the cluster, 4 = swept: not a subscribe or unsubscribe that happened but a
//!   dead node's member removed, or a member put back, by a presence script; older
//!   nodes write 0), u64 LE connection number (of the origin node), u8 user length,
//!   user (empty: none), info JSON (the rest; empty: none). The Redis presence
//!   scripts write the flags (presence_ops.rs), between the two parts of
//!   [`presence_parts`].
//!   u8 6 / 7 (a channel count's query, on the broadcast key / a node's answer, on
//!   the asker's node key): `census::wire`
//! ```
//!
//! Every bus channel carries its name in a Redis Cluster hash tag
//! (`<prefix>:ch:{chat:1}`), and every key kept for it is that name plus a suffix
//! (`<prefix>:ch:{chat:1}:stream`), so that a channel's keys and its sharded pub/sub
//! channel hash to one slot, which a script touching them all needs on Redis Cluster.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use pushgate_protocol::{ConnId, Payload, Position};
use thiserror::Error;

const VERSION: u8 = 1;
const BINARY: u8 = 1;
const HAS_EXCLUDE: u8 = 2;
pub(crate) const CONTROL: u8 = 4;
const POSITIONED: u8 = 8;
const ECHO: u8 = 16;

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
        format!("{}:{{all}}", self.prefix)
    }

    pub fn node(&self, node: &str) -> String {
        format!("{}:node:{{{node}}}", self.prefix)
    }

    pub fn channel(&self, ch: &str) -> String {
        format!("{}:ch:{{{ch}}}", self.prefix)
    }

    pub fn user(&self, user: &str) -> String {
        format!("{}:user:{{{user}}}", self.prefix)
    }

    /// A history channel's hash: its epoch and the last offset assigned.
    pub fn meta(&self, ch: &str) -> String {
        format!("{}:meta", self.channel(ch))
    }

    /// A history channel's stream of publications (entry ids `<offset>-0`).
    pub fn stream(&self, ch: &str) -> String {
        format!("{}:stream", self.channel(ch))
    }

    /// A presence channel's members: connection id -> `<user>\n<info>` (hash).
    pub fn presence(&self, ch: &str) -> String {
        format!("{}:presence", self.channel(ch))
    }

    /// When each member of a presence channel expires unless refreshed: connection
    /// id scored by Unix milliseconds (sorted set).
    pub fn presence_expiry(&self, ch: &str) -> String {
        format!("{}:presence:exp", self.channel(ch))
    }

    /// How many members each user has in a presence channel, cluster-wide: user ->
    /// count (hash), so that a script knows a user's first join and last leave.
    pub fn presence_users(&self, ch: &str) -> String {
        format!("{}:presence:users", self.channel(ch))
    }

    /// Where the outcome of a publication with an idempotency key is kept, for one
    /// bus channel it went to.
    pub fn idempotency(bus_key: &str, key: &str) -> String {
        format!("{bus_key}:idem:{key}")
    }

    /// The hash where live nodes report their counts (cluster stats).
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Which nodes have each channel of a group (a Pusher app), for cluster-wide
    /// `channel_occupied` / `channel_vacated` (sorted set; `:count` and `:swept` are
    /// its companions, `redis::occupancy`). The group is the hash tag.
    pub fn occupancy(&self, group: &str) -> String {
        format!("{}:occupancy:{{{group}}}", self.prefix)
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
        if rest == "{all}" {
            return Some(KeyKind::All);
        }
        let (kind, name) = rest.split_once(':')?;
        let name = name.strip_prefix('{')?.strip_suffix('}')?;
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

/// A connection of the origin node joined or left a presence channel (the key's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceNote {
    pub joined: bool,
    pub conn: ConnId,
    pub user: Option<String>,
    /// The token's `info` claim, as JSON text.
    pub info: Option<String>,
    /// Whether it is its user's first join / last leave in the whole cluster, as the
    /// script that wrote it judged; `None`: not judged (a node of an older version).
    pub user_edge: Option<bool>,
    /// Not a join or leave that happened: a dead node's member removed (expired), or
    /// a member put back, by a presence script. It has no pushgate.v1 event.
    pub swept: bool,
}

/// Presence note flags (the u16 after the op).
pub const NOTE_JUDGED: u8 = 1;
pub const NOTE_EDGE: u8 = 2;
pub const NOTE_SWEPT: u8 = 4;

impl PresenceNote {
    fn flags(&self) -> u8 {
        let judged = match self.user_edge {
            Some(e) => NOTE_JUDGED | (u8::from(e) * NOTE_EDGE),
            None => 0,
        };
        judged | (u8::from(self.swept) * NOTE_SWEPT)
    }
}

/// What a bus message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    Publication(Payload),
    Control(Control),
    Presence(PresenceNote),
    /// A channel count asked of every node, or a node's answer (`census::wire`).
    Census(crate::census::wire::Msg),
}

/// A decoded bus message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub origin: String,
    pub exclude: Option<NodeConn>,
    /// Connection numbers (node keys only).
    pub conns: Vec<ConnId>,
    /// A history channel's publication: where Redis put it.
    pub position: Option<Position>,
    /// The origin did not deliver it when publishing: it delivers it from the bus.
    pub echo: bool,
    pub what: What,
}

/// A bus message this version cannot read.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("undecodable bus message: {0}")]
pub struct DecodeError(pub(crate) &'static str);

/// Encodes a publication's body. `conns` is written only for node keys; `echo`: the
/// origin delivers it from the bus too.
pub fn encode(
    origin: &str,
    exclude: Option<&NodeConn>,
    conns: Option<&[ConnId]>,
    payload: &Payload,
    echo: bool,
) -> Bytes {
    let bytes = payload_bytes(payload);
    let flags = payload_flags(payload, exclude) | (u8::from(echo) * ECHO);
    let mut out = header(origin, flags, exclude, conns, bytes.len());
    out.put_slice(bytes);
    out.freeze()
}

/// The part of a history channel's publication before its position: the Redis
/// script appends the position ([`position_bytes`]) and the payload.
pub fn positioned_head(origin: &str, exclude: Option<&NodeConn>, payload: &Payload) -> Bytes {
    let flags = payload_flags(payload, exclude) | POSITIONED | ECHO;
    header(origin, flags, exclude, None, 0).freeze()
}

/// What the script writes between the head and the payload (the same bytes; for
/// tests and for reading stream entries back).
pub fn position_bytes(p: &Position) -> Bytes {
    let mut out = BytesMut::with_capacity(10 + p.epoch.len());
    put_name(&mut out, &p.epoch);
    out.put_u64_le(p.offset);
    out.freeze()
}

/// The payload as bytes.
pub fn payload_bytes(payload: &Payload) -> &[u8] {
    match payload {
        Payload::Text(t) => t.as_bytes(),
        Payload::Binary(b) => b,
    }
}

fn payload_flags(payload: &Payload, exclude: Option<&NodeConn>) -> u8 {
    let binary = matches!(payload, Payload::Binary(_));
    (u8::from(binary) * BINARY) | (u8::from(exclude.is_some()) * HAS_EXCLUDE)
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

/// Encodes a presence event for a channel's key.
pub fn encode_presence(origin: &str, n: &PresenceNote) -> Bytes {
    let (head, tail) = presence_parts(origin, n);
    let mut out = BytesMut::with_capacity(head.len() + 2 + tail.len());
    out.put_slice(&head);
    out.put_u16_le(n.flags().into());
    out.put_slice(&tail);
    out.freeze()
}

/// A presence event's body without its flags: what comes before them (header and
/// op) and after them, for a script that writes the flags it judged in between.
pub fn presence_parts(origin: &str, n: &PresenceNote) -> (Bytes, Bytes) {
    let info = n.info.as_deref().unwrap_or_default();
    let mut head = header(origin, CONTROL, None, None, 1);
    head.put_u8(if n.joined { 4 } else { 5 });
    let mut tail = BytesMut::with_capacity(9 + 256 + info.len());
    tail.put_u64_le(n.conn.0);
    put_name(&mut tail, n.user.as_deref().unwrap_or_default());
    tail.put_slice(info.as_bytes());
    (head.freeze(), tail.freeze())
}

pub(crate) fn header(
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
pub(crate) fn put_name(out: &mut BytesMut, s: &str) {
    let s = &s.as_bytes()[..s.len().min(255)];
    out.put_u8(s.len() as u8);
    out.put_slice(s);
}

pub(crate) fn get_name(b: &mut Bytes) -> Result<String, DecodeError> {
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
    let position = if flags & POSITIONED != 0 {
        let epoch = get_name(&mut b)?;
        if b.remaining() < 8 {
            return Err(DecodeError("truncated position"));
        }
        Some(Position {
            epoch,
            offset: b.get_u64_le(),
        })
    } else {
        None
    };
    let what = if flags & CONTROL != 0 {
        decode_control(b)?
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
        position,
        echo: flags & (ECHO | POSITIONED) != 0,
        what,
    })
}

fn decode_control(mut b: Bytes) -> Result<What, DecodeError> {
    if b.remaining() < 3 {
        return Err(DecodeError("truncated control"));
    }
    let op = b.get_u8();
    let n = b.get_u16_le();
    match op {
        1 => Ok(What::Control(Control::Disconnect {
            code: n,
            reason: String::from_utf8(b.to_vec())
                .map_err(|_| DecodeError("reason is not UTF-8"))?,
        })),
        2 | 3 => {
            let chs = (0..n).map(|_| get_name(&mut b)).collect::<Result<_, _>>()?;
            Ok(What::Control(if op == 2 {
                Control::Subscribe(chs)
            } else {
                Control::Unsubscribe(chs)
            }))
        }
        4 | 5 => {
            if b.remaining() < 8 {
                return Err(DecodeError("truncated presence event"));
            }
            let conn = ConnId(b.get_u64_le());
            let user = get_name(&mut b)?;
            let info = String::from_utf8(b.to_vec())
                .map_err(|_| DecodeError("presence info is not UTF-8"))?;
            let flags = n as u8;
            Ok(What::Presence(PresenceNote {
                joined: op == 4,
                conn,
                user: (!user.is_empty()).then_some(user),
                info: (!info.is_empty()).then_some(info),
                user_edge: (flags & NOTE_JUDGED != 0).then_some(flags & NOTE_EDGE != 0),
                swept: flags & NOTE_SWEPT != 0,
            }))
        }
        6 | 7 => Ok(What::Census(crate::census::wire::decode(op, n, b)?)),
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
            let b = encode("node-a", exclude, conns, &payload, false);
            let body = decode(b, conns.is_some()).unwrap();
            assert!(!body.echo && body.position.is_none());
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
    fn presence_events_round_trip() {
        for n in [
            PresenceNote {
                joined: true,
                conn: ConnId(42),
                user: Some("alice".into()),
                info: Some(r#"{"name":"A"}"#.into()),
                user_edge: Some(true),
                swept: false,
            },
            PresenceNote {
                joined: false,
                conn: ConnId(1),
                user: None,
                info: None,
                user_edge: None,
                swept: false,
            },
            PresenceNote {
                joined: false,
                conn: ConnId(7),
                user: Some("bob".into()),
                info: None,
                user_edge: Some(false),
                swept: true,
            },
        ] {
            let b = encode_presence("n2", &n);
            let body = decode(b.clone(), false).unwrap();
            assert_eq!((body.origin.as_str(), body.what), ("n2", What::Presence(n)));
            for cut in 0..b.len() {
                let _ = decode(b.slice(..cut), false); // never panics
            }
        }
    }

    #[test]
    fn presence_flags_sit_between_the_parts_and_old_notes_are_not_judged() {
        let n = PresenceNote {
            joined: true,
            conn: ConnId(3),
            user: Some("u".into()),
            info: None,
            user_edge: None,
            swept: false,
        };
        let (head, tail) = presence_parts("n1", &n);
        // What the join script writes: head, flags (judged, edge), 0, tail.
        let written = [&head[..], &[NOTE_JUDGED | NOTE_EDGE, 0], &tail[..]].concat();
        let body = decode(Bytes::from(written), false).unwrap();
        let edge = PresenceNote {
            user_edge: Some(true),
            ..n.clone()
        };
        assert_eq!(body.what, What::Presence(edge));
        // An older node's note: flags 0.
        let old = decode(encode_presence("n1", &n), false).unwrap();
        assert_eq!(old.what, What::Presence(n));
        // The expiry note the cleanup writes in Lua, byte by byte.
        let lua = [
            &[1, CONTROL, 2][..],
            b"n2",
            &[5, NOTE_JUDGED | NOTE_EDGE | NOTE_SWEPT, 0],
            &17u64.to_le_bytes(),
            &[3],
            b"bob",
            br#"{"a":1}"#,
        ]
        .concat();
        let body = decode(Bytes::from(lua), false).unwrap();
        assert_eq!(body.origin, "n2");
        assert_eq!(
            body.what,
            What::Presence(PresenceNote {
                joined: false,
                conn: ConnId(17),
                user: Some("bob".into()),
                info: Some(r#"{"a":1}"#.into()),
                user_edge: Some(true),
                swept: true,
            })
        );
    }

    #[test]
    fn a_small_publication_costs_a_few_bytes_of_framing() {
        let b = encode("n1", None, None, &Payload::Text("x".repeat(100)), false);
        assert_eq!(b.len(), 100 + 5);
    }

    #[test]
    fn truncated_or_foreign_bodies_are_errors_not_panics() {
        let full = encode(
            "n1",
            None,
            Some(&[ConnId(3)]),
            &Payload::Text("abc".into()),
            false,
        );
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
        assert_eq!(k.parse("other:{all}"), None);
        assert_eq!(k.parse("pgx:{all}"), None);
        assert_eq!(k.parse("pg:ch:unbraced"), None);
        // Names with braces or colons still parse back; every key of a channel
        // starts with its bus key, so they share its hash tag.
        assert_eq!(k.parse(&k.channel("a}b{")), Some(KeyKind::Channel("a}b{")));
        assert_eq!(k.channel("chat:1"), "pg:ch:{chat:1}");
        assert_eq!(k.stream("chat:1"), "pg:ch:{chat:1}:stream");
        assert_eq!(k.meta("chat:1"), "pg:ch:{chat:1}:meta");
        assert_eq!(k.presence("room:1"), "pg:ch:{room:1}:presence");
        assert_eq!(k.presence_expiry("room:1"), "pg:ch:{room:1}:presence:exp");
        assert_eq!(k.presence_users("room:1"), "pg:ch:{room:1}:presence:users");
        assert_eq!(Keys::idempotency(&k.user("u"), "k1"), "pg:user:{u}:idem:k1");
    }

    #[test]
    fn a_positioned_body_is_head_position_payload() {
        let x = NodeConn {
            node: "n2".into(),
            id: ConnId(9),
        };
        let p = Payload::Binary(Bytes::from_static(b"\x00\x01"));
        let pos = Position {
            epoch: "e1".into(),
            offset: 42,
        };
        let mut b = BytesMut::new();
        b.put_slice(&positioned_head("n1", Some(&x), &p));
        b.put_slice(&position_bytes(&pos));
        b.put_slice(payload_bytes(&p));
        let body = decode(b.freeze(), false).unwrap();
        assert_eq!(body.position, Some(pos));
        assert!(body.echo);
        assert_eq!(body.exclude, Some(x));
        assert_eq!(body.what, What::Publication(p));
        let echo = decode(
            encode("n1", None, None, &Payload::Text("t".into()), true),
            false,
        );
        assert!(echo.unwrap().echo);
    }
}
