//! Presence through Redis: every node's members of each presence channel, kept in
//! Redis with a TTL that their node refreshes, and `join` / `leave` events on the
//! channel's bus key. It also answers "is this user online anywhere".
//!
//! Per presence channel `C`, three keys that share `C`'s hash tag with its bus channel
//! (so a script may touch them all, on Redis Cluster too):
//!
//! - `<prefix>:ch:{C}:presence`, a hash: connection id -> `<user>\n<info>`;
//! - `<prefix>:ch:{C}:presence:exp`, a sorted set: connection id scored by the Unix
//!   millisecond at which it expires unless its node refreshes it;
//! - `<prefix>:ch:{C}:presence:users`, a hash: user -> its members' count, so that a
//!   user's first join and last leave are judged once for the cluster.
//!
//! Redis 7.0 has no per-field expiry (`HEXPIRE` came in 7.4), hence the sorted set.
//! A join is one script (`JOIN`), a leave another (`LEAVE`); every `ttl / 3` the node
//! puts all its members again (one `PUT` per channel), which also restores them after
//! Redis lost its data. A read (`READ`) first removes the members whose time has
//! passed, then returns the hash: a node killed with `-9` drops out within `ttl`, and
//! its keys expire with the channel. The scripts are in
//! [`presence_scripts`](super::presence_scripts).
//!
//! Each join and leave is `SPUBLISH`ed on the channel's bus key by its script
//! ([`PresenceNote`](crate::wire::PresenceNote), with the script's judgement of its
//! user's edge), so that every node following the channel, this one too, sends the
//! event to its own watchers in Redis's order; the edges a script reports are told to
//! the hub here ([`Presence::cluster_edge`](pushgate_hub::Presence::cluster_edge)),
//! once for the cluster. "Online" is `PUBSUB SHARDNUMSUB` on
//! each user's bus key: a node follows a user's key exactly while it has a connection
//! of that user, and Redis drops the subscriptions of a connection that dies, so no
//! key is kept for it.
//!
//! The task has connections of its own (a [`Pool`], like the publisher's: one per
//! primary, on a Redis Cluster one per master, each command sent to the master of its
//! key's slot, `MOVED`/`ASK` followed, the slot map read again), so that a large read
//! or refresh never delays publications. The commands and replies are in
//! [`presence_ops`](super::presence_ops).

use std::sync::Arc;
use std::time::Duration;

use pushgate_hub::presence::{BoxFuture, Change, PresenceCluster};
use pushgate_hub::{Hub, PresenceError};
use pushgate_protocol::PresenceClient;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::conn::Dialer;
use super::presence_ops::{self as ops, Ctx, Edge, Op};
use super::presence_scripts::{Shas, SCRIPTS};
use super::router::{Pool, Routed, Scripts};
use super::upkeep::{wait_out, Upkeep};
use crate::error::Unavailable;
use crate::wire::Keys;

/// Operations taken in one round trip.
const MAX_BATCH: usize = 512;
/// Members per `PUT` when refreshing a large channel.
const PUT_CHUNK: usize = 500;

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

pub(crate) async fn run(
    hub: Hub,
    dialer: Dialer,
    keys: Keys,
    ttl: Duration,
    mut rx: mpsc::UnboundedReceiver<Op>,
    stop: CancellationToken,
) {
    let m = Metrics {
        refreshes: metrics::counter!("pushgate_broker_presence_refreshes_total"),
        errors: metrics::counter!("pushgate_broker_presence_errors_total"),
    };
    let shas = Shas::computed();
    let node = hub.config().node_id.clone();
    let ctx = Ctx {
        keys: &keys,
        shas: &shas,
        node: &node,
        ttl_ms: ttl.as_millis().to_string(),
    };
    let mut pool = Pool::new(dialer, Scripts::new(&SCRIPTS));
    let mut upkeep = Upkeep::new();
    let mut refresh = tokio::time::interval(ttl / 3);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
    loop {
        if let Err((e, pause)) = upkeep.check(&mut pool, &mut refresh).await {
            m.errors.increment(1);
            tracing::warn!(error = %e, "broker presence cannot reach redis; retrying");
            // Changes are not kept: the refresh after the reconnection puts every
            // member again, and members that left meanwhile expire.
            if !wait_out(pause, &stop, &mut rx, |op| fail(op, &m)).await {
                return;
            }
            continue;
        }
        let ok = tokio::select! {
            _ = stop.cancelled() => {
                // What is queued (the leaves of a draining node) goes out if Redis
                // takes it within a second; the rest expires.
                while let Ok(op) = rx.try_recv() {
                    batch.push(op);
                }
                let flush = round_trip(&mut pool, &ctx, &hub, &mut batch, &m);
                let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
                return;
            }
            _ = refresh.tick() => {
                m.refreshes.increment(1);
                put_all(&mut pool, &ctx, &hub, &m).await
            }
            n = rx.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    return;
                }
                round_trip(&mut pool, &ctx, &hub, &mut batch, &m).await
            }
            // Nothing is expected while idle: this notices a node that went away.
            (addr, r) = pool.idle_read() => {
                tracing::warn!(%addr, reply = ?r, "broker presence: a redis connection failed");
                pool.drop_conn(&addr);
                false
            }
        };
        if !ok {
            // The pool dropped what failed and reads the slot map (or finds the
            // primary) again soon (upkeep.rs); every member is put then.
            upkeep.failed(&mut pool);
        }
    }
}

fn fail(op: Op, m: &Metrics) {
    match op {
        Op::Change(_) => m.errors.increment(1),
        Op::Read { reply, .. } => drop(reply.send(Err(PresenceError::Unavailable))),
        Op::Online { reply, .. } => drop(reply.send(Err(PresenceError::Unavailable))),
    }
}

/// Sends the commands through the pool and answers every operation from its replies;
/// the edges the scripts judged are reported (once for the cluster: here).
/// Returns false if anything was not written (a node failed, an error reply).
async fn send(
    pool: &mut Pool,
    hub: &Hub,
    cmds: &[Routed],
    expects: Vec<ops::Expect>,
    m: &Metrics,
) -> bool {
    let mut failed: Vec<(String, Unavailable)> = Vec::new();
    let replies = pool.round_trip(cmds, &mut failed).await;
    for (addr, why) in &failed {
        tracing::warn!(error = %why, %addr, "broker presence: a redis node failed");
    }
    let mut replies = replies.into_iter();
    let mut ok = failed.is_empty();
    let mut first_error = None;
    let mut edges: Vec<Edge> = Vec::new();
    for e in expects {
        if let Err(why) = e.answer(&mut replies, &mut edges) {
            m.errors.increment(1);
            ok = false;
            first_error.get_or_insert(why);
        }
    }
    if let Some(why) = first_error {
        tracing::warn!(error = %why, "broker presence: redis did not take every operation");
    }
    if let Some(p) = hub.presence() {
        for e in &edges {
            p.cluster_edge(hub, &e.channel, &e.user, e.joined);
        }
    }
    ok
}

/// Puts every local member of every presence channel again, in chunks.
async fn put_all(pool: &mut Pool, ctx: &Ctx<'_>, hub: &Hub, m: &Metrics) -> bool {
    let Some(presence) = hub.presence() else {
        return true;
    };
    let mut ok = true;
    let mut cmds = Vec::new();
    let mut expects = Vec::new();
    for (channel, members) in presence.local_rooms() {
        let members: Vec<(String, String)> = members
            .iter()
            .map(|(id, mb)| {
                let v = ops::member_value(mb.user.as_deref(), mb.info.as_deref());
                (id.display(ctx.node).to_string(), v)
            })
            .collect();
        for chunk in members.chunks(PUT_CHUNK) {
            ops::put(&mut cmds, ctx, &channel, chunk);
            expects.push(ops::Expect::Put(channel.clone()));
        }
        if cmds.len() >= MAX_BATCH {
            ok &= send(pool, hub, &cmds, std::mem::take(&mut expects), m).await;
            cmds.clear();
        }
    }
    if !cmds.is_empty() {
        ok &= send(pool, hub, &cmds, expects, m).await;
    }
    ok
}

/// Writes every operation of the batch (one write per node), reads the replies and
/// answers. The batch is emptied; a caller whose command did not get a reply is told
/// presence is unavailable.
async fn round_trip(
    pool: &mut Pool,
    ctx: &Ctx<'_>,
    hub: &Hub,
    batch: &mut Vec<Op>,
    m: &Metrics,
) -> bool {
    let mut cmds: Vec<Routed> = Vec::with_capacity(batch.len());
    let expects: Vec<ops::Expect> = batch
        .drain(..)
        .map(|op| ops::encode(op, ctx, &mut cmds))
        .collect();
    send(pool, hub, &cmds, expects, m).await
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
    let task = tokio::spawn(run(hub.clone(), dialer, keys, ttl, rx, stop));
    (handle, task)
}
