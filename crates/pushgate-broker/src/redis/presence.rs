//! Presence through Redis: every node's members of each presence channel, kept in
//! Redis with a TTL that their node refreshes, and `join` / `leave` events on the
//! channel's bus key. It also answers "is this user online anywhere".
//!
//! Per presence channel `C`, two keys that share `C`'s hash tag with its bus channel
//! (so a script may touch both, on Redis Cluster too):
//!
//! - `<prefix>:ch:{C}:presence`, a hash: connection id -> `<user>\n<info>`;
//! - `<prefix>:ch:{C}:presence:exp`, a sorted set: connection id scored by the Unix
//!   millisecond at which it expires unless its node refreshes it.
//!
//! Redis 7.0 has no per-field expiry (`HEXPIRE` came in 7.4), hence the sorted set.
//! A join is one script (`PUT`: the hash field, the score `now + ttl` by Redis's
//! clock, both keys' TTL set to `ttl`); a leave is `HDEL` then `ZREM`; every `ttl / 3`
//! the node puts all its members again (one `PUT` per channel), which also restores
//! them after Redis lost its data. A read (`READ`) first removes the members whose
//! time has passed, then returns the hash: a node killed with `-9` drops out within
//! `ttl` without anyone cleaning up, and its keys expire with the channel.
//!
//! Each join and leave is also `SPUBLISH`ed on the channel's bus key (`wire`,
//! [`PresenceNote`]), so that every node following the channel sends the event to its
//! own watchers. "Online" is `PUBSUB SHARDNUMSUB` on the users' bus keys: a node
//! follows a user's key exactly while it has a connection of that user, and Redis
//! drops the subscriptions of a connection that dies, so no key is kept for it.
//!
//! The task has a connection of its own, so that a large read or refresh never
//! delays publications. It uses two things of the connection layer: [`Dialer::open`]
//! and [`exchange`] (commands out in one write, their replies in order).

use std::sync::Arc;
use std::time::Duration;

use pushgate_hub::presence::{BoxFuture, Change, PresenceCluster};
use pushgate_hub::{Hub, PresenceError};
use pushgate_protocol::PresenceClient;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, ConnError, Dialer};
use super::resp::{self, Value};
use super::topology;
use super::Backoff;
use crate::wire::{self, Keys, PresenceNote};

/// Operations taken in one round trip.
const MAX_BATCH: usize = 512;
/// Members per `PUT` when refreshing a large channel.
const PUT_CHUNK: usize = 500;
/// Expired members a `PUT` removes on its way (a `READ` removes all of them).
const PRUNE_ON_PUT: usize = 64;

/// `KEYS`: hash, sorted set. `ARGV`: ttl ms, then connection id, value pairs.
const PUT: &str = r"
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
const READ: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, c in ipairs(dead) do
  redis.call('HDEL', KEYS[1], c)
  redis.call('ZREM', KEYS[2], c)
end
return redis.call('HGETALL', KEYS[1])
";

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

/// The handle the hub's presence and the broker use; the task does the work.
pub(crate) struct RedisPresence {
    ops: mpsc::UnboundedSender<Op>,
    /// How long a caller waits for an answer (a round trip behind at most one batch).
    wait: Duration,
}

impl RedisPresence {
    pub(crate) fn new(ops: mpsc::UnboundedSender<Op>, timeout: Duration) -> RedisPresence {
        RedisPresence {
            ops,
            wait: timeout * 2,
        }
    }

    /// Whether each user has a connection on some node.
    pub(crate) async fn online(&self, users: Vec<String>) -> Result<Vec<bool>, PresenceError> {
        let (reply, rx) = oneshot::channel();
        ask(&self.ops, Op::Online { users, reply }, rx, self.wait).await
    }
}

async fn ask<T>(
    ops: &mpsc::UnboundedSender<Op>,
    op: Op,
    rx: oneshot::Receiver<Result<T, PresenceError>>,
    wait: Duration,
) -> Result<T, PresenceError> {
    ops.send(op).map_err(|_| PresenceError::Unavailable)?;
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(PresenceError::Unavailable),
        Err(_) => Err(PresenceError::Timeout),
    }
}

impl PresenceCluster for RedisPresence {
    fn changed(&self, change: &Change) {
        let _ = self.ops.send(Op::Change(change.clone()));
    }

    fn read(&self, channel: String) -> BoxFuture<Result<Vec<PresenceClient>, PresenceError>> {
        let ops = self.ops.clone();
        let wait = self.wait;
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            ask(&ops, Op::Read { channel, reply }, rx, wait).await
        })
    }
}

struct Metrics {
    refreshes: metrics::Counter,
    errors: metrics::Counter,
}

/// Both scripts' SHA1s, as `EVALSHA` names them.
struct Shas {
    put: String,
    read: String,
}

pub(crate) async fn run(
    hub: Hub,
    dialer: Dialer,
    keys: Keys,
    timeout: Duration,
    ttl: Duration,
    mut rx: mpsc::UnboundedReceiver<Op>,
    stop: CancellationToken,
) {
    let m = Metrics {
        refreshes: metrics::counter!("pushgate_broker_presence_refreshes_total"),
        errors: metrics::counter!("pushgate_broker_presence_errors_total"),
    };
    let ctx = Ctx {
        hub: &hub,
        keys: &keys,
        node: hub.config().node_id.clone(),
        ttl,
    };
    let mut backoff = Backoff::new();
    let mut conn: Option<(Conn, Shas)> = None;
    let mut refresh = tokio::time::interval(ttl / 3);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
    loop {
        let Some((c, shas)) = conn.as_mut() else {
            match connect(&dialer, timeout).await {
                Ok(c) => {
                    backoff.reset();
                    conn = Some(c);
                    // Puts every member now: Redis may have lost them meanwhile.
                    refresh.reset_immediately();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "broker presence cannot reach redis; retrying");
                    let pause = tokio::time::sleep(backoff.next());
                    tokio::pin!(pause);
                    loop {
                        tokio::select! {
                            _ = &mut pause => break,
                            _ = stop.cancelled() => return,
                            op = rx.recv() => match op {
                                // Changes are not kept: the refresh after the
                                // reconnection puts every member again, and members
                                // that left meanwhile expire.
                                Some(op) => fail(op, &m),
                                None => return,
                            },
                        }
                    }
                }
            }
            continue;
        };
        let result = tokio::select! {
            _ = stop.cancelled() => {
                // What is queued (the leaves of a draining node) goes out if Redis
                // takes it within a second; the rest expires.
                while let Ok(op) = rx.try_recv() {
                    batch.push(op);
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), round_trip(c, shas, &ctx, &mut batch)).await;
                return;
            }
            _ = refresh.tick() => {
                m.refreshes.increment(1);
                tokio::time::timeout(timeout.max(Duration::from_secs(5)), put_all(c, shas, &ctx)).await
            }
            n = rx.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    return;
                }
                tokio::time::timeout(timeout, round_trip(c, shas, &ctx, &mut batch)).await
            }
        };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "broker presence lost redis");
                conn = None;
            }
            Err(_) => {
                tracing::warn!(?timeout, "broker presence: redis did not answer in time");
                conn = None;
            }
        }
        if conn.is_none() {
            m.errors.increment(1);
            for op in batch.drain(..) {
                fail(op, &m);
            }
        }
    }
}

/// What a round trip needs besides the connection.
struct Ctx<'a> {
    hub: &'a Hub,
    keys: &'a Keys,
    node: String,
    ttl: Duration,
}

fn fail(op: Op, m: &Metrics) {
    match op {
        Op::Change(_) => m.errors.increment(1),
        Op::Read { reply, .. } => drop(reply.send(Err(PresenceError::Unavailable))),
        Op::Online { reply, .. } => drop(reply.send(Err(PresenceError::Unavailable))),
    }
}

/// Opens the connection and loads both scripts. The connection goes to the primary
/// (standalone or found through the sentinels); on a Redis Cluster, to the master of
/// slot 0 only, so presence there covers the channels whose slots that master serves
/// (docs/presence.md, "Not guaranteed").
async fn connect(dialer: &Dialer, timeout: Duration) -> Result<(Conn, Shas), ConnError> {
    let topo = topology::discover(dialer, None).await?;
    let addr = topo
        .node(0)
        .ok_or_else(|| ConnError::Refused("no node serves slot 0".into()))?
        .to_owned();
    let mut c = dialer.open(&addr).await?;
    let mut load = Vec::new();
    for script in [PUT, READ] {
        let mut cmd = Vec::new();
        resp::command(&mut cmd, [&b"SCRIPT"[..], b"LOAD", script.as_bytes()]);
        load.push(cmd);
    }
    let replies = tokio::time::timeout(timeout, exchange(&mut c, &load))
        .await
        .map_err(|_| ConnError::Timeout(addr.clone(), timeout))??;
    let sha = |v: &Value| {
        v.as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    };
    match (replies.first().and_then(sha), replies.get(1).and_then(sha)) {
        (Some(put), Some(read)) => Ok((c, Shas { put, read })),
        _ => Err(ConnError::Refused(format!("SCRIPT LOAD: {replies:?}"))),
    }
}

/// Writes commands (one per buffer) at once and reads their replies.
pub(crate) async fn exchange(c: &mut Conn, cmds: &[Vec<u8>]) -> Result<Vec<Value>, ConnError> {
    let mut out = Vec::with_capacity(cmds.iter().map(Vec::len).sum());
    for cmd in cmds {
        out.extend_from_slice(cmd);
    }
    c.stream.write_all(&out).await?;
    let mut replies = Vec::with_capacity(cmds.len());
    for _ in 0..cmds.len() {
        replies.push(c.read().await?);
    }
    Ok(replies)
}

/// A member's value in the hash.
fn member_value(user: Option<&str>, info: Option<&str>) -> String {
    format!("{}\n{}", user.unwrap_or_default(), info.unwrap_or_default())
}

fn put_cmd(
    out: &mut Vec<Vec<u8>>,
    shas: &Shas,
    ctx: &Ctx<'_>,
    channel: &str,
    members: &[(String, String)],
) {
    let (h, z) = (
        ctx.keys.presence(channel),
        ctx.keys.presence_expiry(channel),
    );
    let ttl = ctx.ttl.as_millis().to_string();
    let prune = PRUNE_ON_PUT.to_string();
    let mut args: Vec<&[u8]> = vec![
        b"EVALSHA",
        shas.put.as_bytes(),
        b"2",
        h.as_bytes(),
        z.as_bytes(),
        ttl.as_bytes(),
        prune.as_bytes(),
    ];
    for (conn, value) in members {
        args.push(conn.as_bytes());
        args.push(value.as_bytes());
    }
    let mut cmd = Vec::new();
    resp::command(&mut cmd, args);
    out.push(cmd);
}

/// Checks the replies of commands whose answer is not needed: an error reply
/// (`NOSCRIPT` after a `SCRIPT FLUSH`, `OOM`...) drops the connection, which loads
/// the scripts again and puts every member.
fn check(replies: &[Value]) -> Result<(), ConnError> {
    match replies.iter().find(|v| matches!(v, Value::Error(_))) {
        Some(Value::Error(e)) => Err(ConnError::Refused(e.clone())),
        _ => Ok(()),
    }
}

/// Puts every local member of every presence channel again, in chunks.
async fn put_all(c: &mut Conn, shas: &Shas, ctx: &Ctx<'_>) -> Result<(), ConnError> {
    let Some(presence) = ctx.hub.presence() else {
        return Ok(());
    };
    let mut cmds = Vec::new();
    for (channel, members) in presence.local_rooms() {
        let members: Vec<(String, String)> = members
            .iter()
            .map(|(id, m)| {
                let v = member_value(m.user.as_deref(), m.info.as_deref());
                (id.display(&ctx.node).to_string(), v)
            })
            .collect();
        for chunk in members.chunks(PUT_CHUNK) {
            put_cmd(&mut cmds, shas, ctx, &channel, chunk);
        }
        if cmds.len() >= MAX_BATCH {
            check(&exchange(c, &cmds).await?)?;
            cmds.clear();
        }
    }
    if !cmds.is_empty() {
        check(&exchange(c, &cmds).await?)?;
    }
    Ok(())
}

/// What each operation of a batch expects back.
enum Expect {
    /// This many replies, checked for errors only.
    Ignore(usize),
    Read(oneshot::Sender<Result<Vec<PresenceClient>, PresenceError>>),
    Online(usize, oneshot::Sender<Result<Vec<bool>, PresenceError>>),
}

/// Writes every operation of the batch in one write, reads the replies and answers.
/// The batch is emptied; if the connection fails, the callers waiting for an answer
/// are told it is unavailable (their reply channel is dropped).
async fn round_trip(
    c: &mut Conn,
    shas: &Shas,
    ctx: &Ctx<'_>,
    batch: &mut Vec<Op>,
) -> Result<(), ConnError> {
    let mut cmds: Vec<Vec<u8>> = Vec::with_capacity(batch.len() * 2);
    let mut expects = Vec::with_capacity(batch.len());
    for op in batch.drain(..) {
        let before = cmds.len();
        match op {
            Op::Change(ch) => {
                let conn = ch.conn.display(&ctx.node).to_string();
                if ch.joined {
                    let v = member_value(ch.member.user.as_deref(), ch.member.info.as_deref());
                    put_cmd(&mut cmds, shas, ctx, &ch.channel, &[(conn, v)]);
                } else {
                    // The hash first: a member is listed only while it is in the hash.
                    let h = ctx.keys.presence(&ch.channel);
                    let z = ctx.keys.presence_expiry(&ch.channel);
                    cmds.push(command([b"HDEL", h.as_bytes(), conn.as_bytes()]));
                    cmds.push(command([b"ZREM", z.as_bytes(), conn.as_bytes()]));
                }
                let note = PresenceNote {
                    joined: ch.joined,
                    conn: ch.conn,
                    user: ch.member.user.as_deref().map(Into::into),
                    info: ch.member.info.as_deref().map(Into::into),
                };
                let body = wire::encode_presence(&ctx.node, &note);
                let bus = ctx.keys.channel(&ch.channel);
                cmds.push(command([b"SPUBLISH", bus.as_bytes(), &body]));
                expects.push(Expect::Ignore(cmds.len() - before));
            }
            Op::Read { channel, reply } => {
                let (h, z) = (
                    ctx.keys.presence(&channel),
                    ctx.keys.presence_expiry(&channel),
                );
                cmds.push(command([
                    b"EVALSHA",
                    shas.read.as_bytes(),
                    b"2",
                    h.as_bytes(),
                    z.as_bytes(),
                ]));
                expects.push(Expect::Read(reply));
            }
            Op::Online { users, reply } => {
                let keys: Vec<String> = users.iter().map(|u| ctx.keys.user(u)).collect();
                let mut cmd = Vec::new();
                resp::command(
                    &mut cmd,
                    [&b"PUBSUB"[..], b"SHARDNUMSUB"]
                        .into_iter()
                        .chain(keys.iter().map(|k| k.as_bytes())),
                );
                cmds.push(cmd);
                expects.push(Expect::Online(users.len(), reply));
            }
        }
    }
    let mut replies = exchange(c, &cmds).await?.into_iter();
    let mut failed = None;
    for expect in expects {
        match expect {
            Expect::Ignore(n) => {
                let got: Vec<Value> = replies.by_ref().take(n).collect();
                if let Err(e) = check(&got) {
                    failed = Some(e);
                }
            }
            Expect::Read(reply) => {
                let r = match replies.next() {
                    Some(Value::Array(Some(items))) => Ok(parse_members(&items)),
                    Some(Value::Error(e)) => {
                        failed = Some(ConnError::Refused(e));
                        Err(PresenceError::Unavailable)
                    }
                    _ => Err(PresenceError::Unavailable),
                };
                let _ = reply.send(r);
            }
            Expect::Online(n, reply) => {
                let r = match replies.next() {
                    Some(Value::Array(Some(items))) => Ok(parse_online(&items, n)),
                    _ => Err(PresenceError::Unavailable),
                };
                let _ = reply.send(r);
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One command of fixed arity.
fn command<const N: usize>(args: [&[u8]; N]) -> Vec<u8> {
    let mut cmd = Vec::new();
    resp::command(&mut cmd, args);
    cmd
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

/// `PUBSUB SHARDNUMSUB`: key, count pairs in the order asked.
fn parse_online(items: &[Value], n: usize) -> Vec<bool> {
    let mut out: Vec<bool> = items
        .chunks(2)
        .map(|kv| matches!(kv.get(1), Some(Value::Int(c)) if *c > 0))
        .collect();
    out.resize(n, false);
    out
}

/// Starts the task and installs it in the hub's presence (if the node has rules).
pub(crate) fn start(
    hub: &Hub,
    dialer: Dialer,
    keys: Keys,
    timeout: Duration,
    ttl: Duration,
    stop: CancellationToken,
) -> (Arc<RedisPresence>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = Arc::new(RedisPresence::new(tx, timeout));
    if let Some(p) = hub.presence() {
        p.install(handle.clone());
    }
    let task = tokio::spawn(run(hub.clone(), dialer, keys, timeout, ttl, rx, stop));
    (handle, task)
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
        let online = [b("k1"), Value::Int(2), b("k2"), Value::Int(0)];
        assert_eq!(parse_online(&online, 2), vec![true, false]);
    }
}
