//! Presence's Redis side, without the connections: the two scripts, the commands each
//! operation becomes (each with the slot of its key, so that a Redis Cluster routes
//! it to the channel's master) and how an operation is answered from its replies.
//!
//! Every command of one presence channel touches keys that carry the channel's hash
//! tag (`wire::Keys`): the hash, the sorted set and the bus key of its events share
//! one slot. "Online" asks `PUBSUB SHARDNUMSUB` once per user, on the master of the
//! user's bus key (one command for several users would span slots).

use pushgate_hub::presence::Change;
use pushgate_hub::PresenceError;
use pushgate_protocol::PresenceClient;
use tokio::sync::oneshot;

use super::resp::{self, Value};
use super::router::{Reply, Routed};
use super::topology;
use crate::wire::{self, Keys, PresenceNote};

/// Expired members a `PUT` removes on its way (a `READ` removes all of them).
const PRUNE_ON_PUT: usize = 64;

/// `KEYS`: hash, sorted set. `ARGV`: ttl ms, then connection id, value pairs.
pub(crate) const PUT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, c in ipairs(dead) do
  redis.call('HDEL', KEYS[1], c)
  redis.call('ZREM', KEYS[2], c)
end
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return #dead
";

/// `KEYS`: hash, sorted set. Removes the expired members, returns the others.
pub(crate) const READ: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, c in ipairs(dead) do
  redis.call('HDEL', KEYS[1], c)
  redis.call('ZREM', KEYS[2], c)
end
return redis.call('HGETALL', KEYS[1])
";

/// The scripts in the order of [`Shas`].
pub(crate) const SCRIPTS: [&str; 2] = [PUT, READ];

/// Both scripts' SHA1s, as `EVALSHA` names them (Redis's digest of their text).
pub(crate) struct Shas {
    put: String,
    read: String,
}

impl Shas {
    pub(crate) fn computed() -> Shas {
        let sha = |s: &str| sha1_smol::Sha1::from(s).digest().to_string();
        Shas {
            put: sha(PUT),
            read: sha(READ),
        }
    }
}

/// What the task is asked to do.
pub(crate) enum Op {
    Change(Change),
    Read {
        channel: String,
        reply: oneshot::Sender<Result<Vec<PresenceClient>, PresenceError>>,
    },
    Online {
        users: Vec<String>,
        reply: oneshot::Sender<Result<Vec<bool>, PresenceError>>,
    },
}

/// What encoding needs.
pub(crate) struct Ctx<'a> {
    pub(crate) keys: &'a Keys,
    pub(crate) shas: &'a Shas,
    pub(crate) node: &'a str,
    pub(crate) ttl_ms: String,
}

/// What an operation expects back, once encoded.
pub(crate) enum Expect {
    /// This many replies, checked for errors only.
    Ignore(usize),
    Read(oneshot::Sender<Result<Vec<PresenceClient>, PresenceError>>),
    /// One reply per user.
    Online(usize, oneshot::Sender<Result<Vec<bool>, PresenceError>>),
}

impl Expect {
    /// How many replies it takes.
    fn replies(&self) -> usize {
        match self {
            Expect::Ignore(n) | Expect::Online(n, _) => *n,
            Expect::Read(_) => 1,
        }
    }

    /// Answers from the operation's replies; `Err` with what went wrong (a node not
    /// reached, or an error reply), for the caller to log and repair.
    pub(crate) fn answer(self, replies: &mut impl Iterator<Item = Reply>) -> Result<(), String> {
        let n = self.replies();
        let got: Vec<Reply> = replies.take(n).collect();
        let mut values = Vec::with_capacity(n);
        let mut trouble = None;
        for r in got {
            match r {
                Reply::Got(Value::Error(e)) => trouble = Some(e),
                Reply::Got(v) => values.push(v),
                Reply::NotSent(u) => trouble = Some(u.to_string()),
                Reply::Lost(u) => trouble = Some(u.to_string()),
            }
        }
        let whole = trouble.is_none() && values.len() == n;
        match self {
            Expect::Ignore(_) => {}
            Expect::Read(reply) => {
                let r = match values.first() {
                    Some(Value::Array(Some(items))) if whole => Ok(parse_members(items)),
                    _ => Err(PresenceError::Unavailable),
                };
                let _ = reply.send(r);
            }
            Expect::Online(_, reply) => {
                let r = values
                    .iter()
                    .map(is_online)
                    .collect::<Option<Vec<bool>>>()
                    .filter(|_| whole)
                    .ok_or(PresenceError::Unavailable);
                let _ = reply.send(r);
            }
        }
        trouble.map_or(Ok(()), Err)
    }
}

/// Appends the commands of `op` and returns what it expects back.
pub(crate) fn encode(op: Op, ctx: &Ctx<'_>, out: &mut Vec<Routed>) -> Expect {
    match op {
        Op::Change(ch) => {
            let before = out.len();
            let slot = topology::slot(ctx.keys.channel(&ch.channel).as_bytes());
            let conn = ch.conn.display(ctx.node).to_string();
            if ch.joined {
                let v = member_value(ch.member.user.as_deref(), ch.member.info.as_deref());
                put(out, ctx, &ch.channel, &[(conn, v)]);
            } else {
                // The hash first: a member is listed only while it is in the hash.
                let h = ctx.keys.presence(&ch.channel);
                let z = ctx.keys.presence_expiry(&ch.channel);
                out.push(routed(slot, [b"HDEL", h.as_bytes(), conn.as_bytes()]));
                out.push(routed(slot, [b"ZREM", z.as_bytes(), conn.as_bytes()]));
            }
            let note = PresenceNote {
                joined: ch.joined,
                conn: ch.conn,
                user: ch.member.user.as_deref().map(Into::into),
                info: ch.member.info.as_deref().map(Into::into),
            };
            let body = wire::encode_presence(ctx.node, &note);
            let bus = ctx.keys.channel(&ch.channel);
            out.push(routed(slot, [b"SPUBLISH", bus.as_bytes(), &body]));
            Expect::Ignore(out.len() - before)
        }
        Op::Read { channel, reply } => {
            let (h, z) = (
                ctx.keys.presence(&channel),
                ctx.keys.presence_expiry(&channel),
            );
            let slot = topology::slot(h.as_bytes());
            let read = ctx.shas.read.as_bytes();
            out.push(routed(
                slot,
                [b"EVALSHA", read, b"2", h.as_bytes(), z.as_bytes()],
            ));
            Expect::Read(reply)
        }
        Op::Online { users, reply } => {
            for u in &users {
                let key = ctx.keys.user(u);
                let slot = topology::slot(key.as_bytes());
                out.push(routed(slot, [b"PUBSUB", b"SHARDNUMSUB", key.as_bytes()]));
            }
            Expect::Online(users.len(), reply)
        }
    }
}

/// Appends a `PUT` of `members` (connection id, value) to `channel`.
pub(crate) fn put(
    out: &mut Vec<Routed>,
    ctx: &Ctx<'_>,
    channel: &str,
    members: &[(String, String)],
) {
    let (h, z) = (
        ctx.keys.presence(channel),
        ctx.keys.presence_expiry(channel),
    );
    let prune = PRUNE_ON_PUT.to_string();
    let mut args: Vec<&[u8]> = vec![
        b"EVALSHA",
        ctx.shas.put.as_bytes(),
        b"2",
        h.as_bytes(),
        z.as_bytes(),
        ctx.ttl_ms.as_bytes(),
        prune.as_bytes(),
    ];
    for (conn, value) in members {
        args.push(conn.as_bytes());
        args.push(value.as_bytes());
    }
    let mut bytes = Vec::new();
    resp::command(&mut bytes, args);
    out.push(Routed {
        slot: topology::slot(h.as_bytes()),
        bytes,
    });
}

/// One command of fixed arity, for the node of `slot`.
fn routed<const N: usize>(slot: u16, args: [&[u8]; N]) -> Routed {
    let mut bytes = Vec::new();
    resp::command(&mut bytes, args);
    Routed { slot, bytes }
}

/// A member's value in the hash.
pub(crate) fn member_value(user: Option<&str>, info: Option<&str>) -> String {
    format!("{}\n{}", user.unwrap_or_default(), info.unwrap_or_default())
}

/// `HGETALL` of the hash: connection id, `<user>\n<info>` pairs, sorted by id.
fn parse_members(items: &[Value]) -> Vec<PresenceClient> {
    let mut out: Vec<PresenceClient> = items
        .chunks(2)
        .filter_map(|kv| {
            let conn = String::from_utf8(kv.first()?.as_bytes()?.to_vec()).ok()?;
            let v = std::str::from_utf8(kv.get(1)?.as_bytes()?).ok()?;
            let (user, info) = v.split_once('\n').unwrap_or((v, ""));
            Some(PresenceClient {
                conn,
                user: (!user.is_empty()).then(|| user.to_owned()),
                info: (!info.is_empty()).then(|| info.to_owned()),
            })
        })
        .collect();
    out.sort();
    out
}

/// `PUBSUB SHARDNUMSUB key`: `[key, count]`.
fn is_online(v: &Value) -> Option<bool> {
    match v {
        Value::Array(Some(kv)) => match kv.get(1) {
            Some(Value::Int(c)) => Some(*c > 0),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn members_parse_back_sorted_with_user_and_info() {
        let b = |s: &str| Value::Bulk(Some(Bytes::from(s.to_owned())));
        let items = [
            b("n2-1"),
            b(&member_value(None, None)),
            b("n1-9"),
            b(&member_value(Some("alice"), Some(r#"{"a":1}"#))),
        ];
        let got = parse_members(&items);
        assert_eq!(got[0].conn, "n1-9");
        assert_eq!(got[0].user.as_deref(), Some("alice"));
        assert_eq!(got[0].info.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!((got[1].user.as_ref(), got[1].info.as_ref()), (None, None));
        let kv = |k: &str, n: i64| Value::Array(Some(vec![b(k), Value::Int(n)]));
        assert_eq!(is_online(&kv("k1", 2)), Some(true));
        assert_eq!(is_online(&kv("k2", 0)), Some(false));
        assert_eq!(is_online(&Value::Error("MOVED 1 h:1".into())), None);
    }

    #[test]
    fn every_command_of_a_channel_goes_to_its_slot_and_online_to_each_users() {
        let keys = Keys::new("pg");
        let shas = Shas::computed();
        let ctx = Ctx {
            keys: &keys,
            shas: &shas,
            node: "n1",
            ttl_ms: "3000".into(),
        };
        let mut out = Vec::new();
        let (reply, _rx) = oneshot::channel();
        encode(
            Op::Read {
                channel: "room:1".into(),
                reply,
            },
            &ctx,
            &mut out,
        );
        let (reply, _rx) = oneshot::channel();
        let users = vec!["alice".to_owned(), "bob".to_owned()];
        let e = encode(Op::Online { users, reply }, &ctx, &mut out);
        assert_eq!(e.replies(), 2);
        put(
            &mut out,
            &ctx,
            "room:1",
            &[("n1-1".into(), member_value(None, None))],
        );
        let slots: Vec<u16> = out.iter().map(|r| r.slot).collect();
        let ch = topology::slot(b"room:1");
        assert_eq!(
            slots,
            [
                ch,
                topology::slot(keys.user("alice").as_bytes()),
                topology::slot(keys.user("bob").as_bytes()),
                ch
            ]
        );
        // A redirect that was not followed, or a node not reached: unavailable.
        let (reply, rx) = oneshot::channel();
        let e = Expect::Online(2, reply);
        let mut replies = vec![
            Reply::Got(Value::Array(Some(vec![Value::Int(0), Value::Int(1)]))),
            Reply::NotSent(crate::error::Unavailable::Connecting),
        ]
        .into_iter();
        assert!(e.answer(&mut replies).is_err());
        assert!(matches!(
            rx.blocking_recv().unwrap(),
            Err(PresenceError::Unavailable)
        ));
    }
}
