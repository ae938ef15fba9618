//! Presence's Redis side, without the connections: the commands each operation
//! becomes (each with the slot of its key, so that a Redis Cluster routes it to the
//! channel's master) and how an operation is answered from its replies. The scripts
//! are in [`presence_scripts`](super::presence_scripts).
//!
//! Every command of one presence channel touches keys that carry the channel's hash
//! tag (`wire::Keys`): the hash, the sorted set, the user counts and the bus key of
//! its events share one slot. "Online" asks `PUBSUB SHARDNUMSUB` once per user, on the master of the
//! user's bus key (one command for several users would span slots).

use std::sync::Arc;

use pushgate_hub::presence::Change;
use pushgate_hub::PresenceError;
use pushgate_protocol::PresenceClient;
use tokio::sync::oneshot;

use super::presence_scripts::{self as scripts, Shas};
use super::resp::{self, Value};
use super::router::{Reply, Routed};
use super::topology;
use crate::wire::{self, Keys, PresenceNote};

/// Expired members a `PUT` or `JOIN` removes on its way (a `READ` removes all of them).
pub(crate) const PRUNE_ON_PUT: usize = 64;

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

/// A user's first join (`joined`) or last leave of a channel, judged cluster-wide by
/// a script this node ran: the node reports it once for the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edge {
    pub(crate) channel: String,
    pub(crate) user: String,
    pub(crate) joined: bool,
}

/// What an operation expects back, once encoded.
pub(crate) enum Expect {
    /// One `PUT` of `channel`'s members (the refresh).
    Put(String),
    /// One `JOIN` or `LEAVE` of `channel` by a member of `user`.
    Change {
        channel: Arc<str>,
        user: Option<Arc<str>>,
        joined: bool,
    },
    Read(
        String,
        oneshot::Sender<Result<Vec<PresenceClient>, PresenceError>>,
    ),
    /// One reply per user.
    Online(usize, oneshot::Sender<Result<Vec<bool>, PresenceError>>),
}

impl Expect {
    /// How many replies it takes.
    fn replies(&self) -> usize {
        match self {
            Expect::Online(n, _) => *n,
            Expect::Put(_) | Expect::Change { .. } | Expect::Read(..) => 1,
        }
    }

    /// Answers from the operation's replies and appends the edges they report to
    /// `edges`; `Err` with what went wrong (a node not reached, an error reply or a
    /// reply of the wrong shape), for the caller to log and repair.
    pub(crate) fn answer(
        self,
        replies: &mut impl Iterator<Item = Reply>,
        edges: &mut Vec<Edge>,
    ) -> Result<(), String> {
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
        let expired = |channel: &str, gone: Vec<String>, edges: &mut Vec<Edge>| {
            edges.extend(gone.into_iter().map(|user| Edge {
                channel: channel.to_owned(),
                user,
                joined: false,
            }));
        };
        let unexpected = || Some("unexpected presence script reply".to_owned());
        match self {
            Expect::Put(channel) => {
                if let Some(v) = values.first().filter(|_| whole) {
                    match scripts::put_reply(v) {
                        Some((gone, back)) => {
                            expired(&channel, gone, edges);
                            edges.extend(back.into_iter().map(|user| Edge {
                                channel: channel.clone(),
                                user,
                                joined: true,
                            }));
                        }
                        None => trouble = unexpected(),
                    }
                }
            }
            Expect::Change {
                channel,
                user,
                joined,
            } => {
                if let Some(v) = values.first().filter(|_| whole) {
                    match scripts::change_reply(v) {
                        Some((edge, gone)) => {
                            expired(&channel, gone, edges);
                            if let (true, Some(user)) = (edge, user) {
                                edges.push(Edge {
                                    channel: channel.to_string(),
                                    user: user.to_string(),
                                    joined,
                                });
                            }
                        }
                        None => trouble = unexpected(),
                    }
                }
            }
            Expect::Read(channel, reply) => {
                let r = match values.first().and_then(scripts::read_reply) {
                    Some((items, gone)) if whole => {
                        expired(&channel, gone, edges);
                        Ok(parse_members(items))
                    }
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
            let conn = ch.conn.display(ctx.node).to_string();
            let note = PresenceNote {
                joined: ch.joined,
                conn: ch.conn,
                user: ch.member.user.as_deref().map(Into::into),
                info: ch.member.info.as_deref().map(Into::into),
                user_edge: None,
                swept: false,
            };
            // The script writes the flags between the two parts, with its judgement.
            let (head, tail) = wire::presence_parts(ctx.node, &note);
            let bus = ctx.keys.channel(&ch.channel);
            let k = ChannelKeys::new(ctx.keys, &ch.channel);
            let prune = PRUNE_ON_PUT.to_string();
            let mut args: Vec<&[u8]> = Vec::with_capacity(13);
            if ch.joined {
                let v = member_value(ch.member.user.as_deref(), ch.member.info.as_deref());
                args.extend([b"EVALSHA", ctx.shas.join.as_bytes(), b"3"]);
                args.extend(k.all());
                args.extend([ctx.ttl_ms.as_bytes(), prune.as_bytes(), bus.as_bytes()]);
                args.extend([&head[..], &tail[..], conn.as_bytes(), v.as_bytes()]);
                out.push(command(k.slot(), args));
            } else {
                args.extend([b"EVALSHA", ctx.shas.leave.as_bytes(), b"3"]);
                args.extend(k.all());
                args.extend([bus.as_bytes(), &head[..], &tail[..], conn.as_bytes()]);
                out.push(command(k.slot(), args));
            }
            Expect::Change {
                channel: ch.channel,
                user: ch.member.user,
                joined: ch.joined,
            }
        }
        Op::Read { channel, reply } => {
            let k = ChannelKeys::new(ctx.keys, &channel);
            let bus = ctx.keys.channel(&channel);
            let mut args: Vec<&[u8]> = vec![b"EVALSHA", ctx.shas.read.as_bytes(), b"3"];
            args.extend(k.all());
            args.push(bus.as_bytes());
            out.push(command(k.slot(), args));
            Expect::Read(channel, reply)
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

/// A presence channel's three keys (one slot).
struct ChannelKeys {
    members: String,
    expiry: String,
    users: String,
}

impl ChannelKeys {
    fn new(keys: &Keys, channel: &str) -> ChannelKeys {
        ChannelKeys {
            members: keys.presence(channel),
            expiry: keys.presence_expiry(channel),
            users: keys.presence_users(channel),
        }
    }

    fn all(&self) -> [&[u8]; 3] {
        [
            self.members.as_bytes(),
            self.expiry.as_bytes(),
            self.users.as_bytes(),
        ]
    }

    fn slot(&self) -> u16 {
        topology::slot(self.members.as_bytes())
    }
}

/// Appends a `PUT` of `members` (connection id, value) to `channel` (the refresh).
pub(crate) fn put(
    out: &mut Vec<Routed>,
    ctx: &Ctx<'_>,
    channel: &str,
    members: &[(String, String)],
) {
    let k = ChannelKeys::new(ctx.keys, channel);
    let bus = ctx.keys.channel(channel);
    let prune = PRUNE_ON_PUT.to_string();
    let mut args: Vec<&[u8]> = vec![b"EVALSHA", ctx.shas.put.as_bytes(), b"3"];
    args.extend(k.all());
    args.extend([ctx.ttl_ms.as_bytes(), prune.as_bytes(), bus.as_bytes()]);
    for (conn, value) in members {
        args.push(conn.as_bytes());
        args.push(value.as_bytes());
    }
    out.push(command(k.slot(), args));
}

fn command(slot: u16, args: Vec<&[u8]>) -> Routed {
    let mut bytes = Vec::new();
    resp::command(&mut bytes, args);
    Routed { slot, bytes }
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
        assert!(e.answer(&mut replies, &mut Vec::new()).is_err());
        assert!(matches!(
            rx.blocking_recv().unwrap(),
            Err(PresenceError::Unavailable)
        ));
    }

    #[test]
    fn script_replies_become_edges_once_each_and_odd_ones_are_trouble() {
        let b = |s: &str| Value::Bulk(Some(Bytes::from(s.to_owned())));
        let arr = |v: Vec<Value>| Reply::Got(Value::Array(Some(v)));
        let list = |v: Vec<Value>| Value::Array(Some(v));
        let change = |joined| Expect::Change {
            channel: "room".into(),
            user: Some("u".into()),
            joined,
        };
        let mut edges = Vec::new();
        // A join that was u's first, and cleaned up eve's last (expired) member.
        let mut r = vec![arr(vec![Value::Int(1), list(vec![b("eve")])])].into_iter();
        change(true).answer(&mut r, &mut edges).unwrap();
        // A leave that was not u's last.
        let mut r = vec![arr(vec![Value::Int(0), list(vec![])])].into_iter();
        change(false).answer(&mut r, &mut edges).unwrap();
        // A refresh that put back ann's first member.
        let mut r = vec![arr(vec![list(vec![]), list(vec![b("ann")])])].into_iter();
        Expect::Put("room".into())
            .answer(&mut r, &mut edges)
            .unwrap();
        let edge = |user: &str, joined| Edge {
            channel: "room".into(),
            user: user.into(),
            joined,
        };
        assert_eq!(
            edges,
            [edge("eve", false), edge("u", true), edge("ann", true)]
        );
        // A reply of another shape reports nothing and is trouble.
        let mut r = vec![Reply::Got(Value::Int(1))].into_iter();
        assert!(change(false).answer(&mut r, &mut edges).is_err());
        assert_eq!(edges.len(), 3);
    }
}
