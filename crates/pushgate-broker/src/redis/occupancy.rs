//! Cluster-wide channel occupancy: which channels of a group (a Pusher app) have a
//! subscriber on some node, so that `channel_occupied` is sent once when a channel
//! gets its first subscriber in the cluster and `channel_vacated` once when it loses
//! its last, by the node whose change made it.
//!
//! The hub's channel observer tells [`Occupancy::changed`] of this node's transitions
//! (first local subscriber, last one); the call only queues them, so the shards never
//! wait. One task takes the queue in batches and runs a script per transition
//! ([`occupancy_ops`](super::occupancy_ops)): `PUT` adds this node's entry for the
//! channel and says whether it was the first, `VACATE` removes it and says whether it
//! was the last. The task's queue keeps a node's transitions of a channel in order,
//! and on a Redis Cluster all of a group's commands go to one master, in order on one
//! connection: a vacate never overtakes its occupy.
//!
//! Every third of the TTL the task puts all its channels again (their entries expire
//! after the TTL unless refreshed: a node killed with `-9` drops out) and sweeps each
//! group: the expired entries are removed, atomically, and the channels left with no
//! entry are reported vacated by the node whose sweep removed them.
//!
//! What the task holds is the truth for this node: while Redis is unreachable,
//! transitions only change it; once Redis answers again, every channel is put again
//! (one whose occupy did not reach Redis is reported occupied if it is first), and the
//! entries of channels left meanwhile expire and are swept (reported vacated then).

use std::time::Duration;

use ahash::AHashMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::conn::Dialer;
use super::occupancy_ops::{self as ops, Ctx, Shas, SCRIPTS, SWEPT_KEPT_TTLS};
use super::router::{Pool, Routed, Scripts};
use super::upkeep::{wait_out, Upkeep};
use crate::wire::Keys;

/// Transitions taken in one round trip.
const MAX_BATCH: usize = 512;
/// Channels per `PUT` when refreshing.
const PUT_CHUNK: usize = 500;

/// Told `(group, channel, occupied)` for each cluster-wide transition this node made.
/// Called from the task; must not block.
pub type OccupancyReport = Box<dyn Fn(&str, &str, bool) + Send + Sync>;

/// One node-wide transition of a channel.
pub(crate) struct Op {
    group: String,
    channel: String,
    occupied: bool,
}

/// The handle the hub's channel observer calls; cheap to clone.
#[derive(Clone)]
pub struct Occupancy {
    ops: mpsc::UnboundedSender<Op>,
}

impl Occupancy {
    /// This node's channel `channel` of `group` got its first subscriber here
    /// (`occupied`) or lost its last one. Queues it; never waits.
    pub fn changed(&self, group: &str, channel: &str, occupied: bool) {
        let _ = self.ops.send(Op {
            group: group.to_owned(),
            channel: channel.to_owned(),
            occupied,
        });
    }
}

/// This node's channels per group, each with whether Redis took its occupy.
#[derive(Default)]
struct Held(AHashMap<String, AHashMap<String, bool>>);

impl Held {
    fn apply(&mut self, op: &Op) {
        if op.occupied {
            self.0
                .entry(op.group.clone())
                .or_default()
                .insert(op.channel.clone(), false);
        } else if let Some(g) = self.0.get_mut(&op.group) {
            g.remove(&op.channel);
            if g.is_empty() {
                self.0.remove(&op.group);
            }
        }
    }

    fn confirm(&mut self, group: &str, channel: &str, taken: bool) {
        if let Some(c) = self.0.get_mut(group).and_then(|g| g.get_mut(channel)) {
            *c = taken;
        }
    }
}

struct Metrics {
    refreshes: metrics::Counter,
    errors: metrics::Counter,
}

/// What the task works with.
struct Task {
    pool: Pool,
    held: Held,
    groups: Vec<String>,
    report: OccupancyReport,
    m: Metrics,
}

/// What a command of a round trip was, to read its reply.
enum Sent {
    Occupy(String, String),
    Vacate(String, String),
    Refresh(String, Vec<String>),
    Sweep(String),
}

/// Starts the task for `groups` (the groups swept; transitions of others are put too).
pub(crate) fn start(
    dialer: Dialer,
    keys: Keys,
    node: String,
    ttl: Duration,
    groups: Vec<String>,
    report: OccupancyReport,
    stop: CancellationToken,
) -> (Occupancy, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = Task {
        pool: Pool::new(dialer, Scripts::new(&SCRIPTS)),
        held: Held::default(),
        groups,
        report,
        m: Metrics {
            refreshes: metrics::counter!("pushgate_broker_occupancy_refreshes_total"),
            errors: metrics::counter!("pushgate_broker_occupancy_errors_total"),
        },
    };
    let handle = tokio::spawn(run(task, keys, node, ttl, rx, stop));
    (Occupancy { ops: tx }, handle)
}

async fn run(
    mut t: Task,
    keys: Keys,
    node: String,
    ttl: Duration,
    mut rx: mpsc::UnboundedReceiver<Op>,
    stop: CancellationToken,
) {
    let shas = Shas::computed();
    let ctx = Ctx {
        keys: &keys,
        shas: &shas,
        node: &node,
        ttl_ms: ttl.as_millis().to_string(),
        swept_ms: (ttl * SWEPT_KEPT_TTLS).as_millis().to_string(),
    };
    let mut upkeep = Upkeep::new();
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
    loop {
        if let Err((e, pause)) = upkeep.check(&mut t.pool, &mut tick).await {
            t.m.errors.increment(1);
            tracing::warn!(error = %e, "broker occupancy cannot reach redis; retrying");
            // Kept here only: the refresh after the reconnection puts what is held,
            // and what was left expires.
            if !wait_out(pause, &stop, &mut rx, |op| t.held.apply(&op)).await {
                return;
            }
            continue;
        }
        let ok = tokio::select! {
            _ = stop.cancelled() => {
                // The vacates of a draining node go out if Redis takes them within a
                // second; the rest expires and is swept by the other nodes.
                while let Ok(op) = rx.try_recv() {
                    batch.push(op);
                }
                let flush = t.transitions(&ctx, &mut batch);
                let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
                return;
            }
            _ = tick.tick() => {
                t.m.refreshes.increment(1);
                t.refresh(&ctx).await
            }
            n = rx.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    return;
                }
                t.transitions(&ctx, &mut batch).await
            }
            // Nothing is expected while idle: this notices a node that went away.
            (addr, r) = t.pool.idle_read() => {
                tracing::warn!(%addr, reply = ?r, "broker occupancy: a redis connection failed");
                t.pool.drop_conn(&addr);
                false
            }
        };
        if !ok {
            upkeep.failed(&mut t.pool);
        }
    }
}

impl Task {
    /// Runs a batch of transitions, in order, and reports what they made.
    async fn transitions(&mut self, ctx: &Ctx<'_>, batch: &mut Vec<Op>) -> bool {
        let mut cmds = Vec::with_capacity(batch.len());
        let mut sent = Vec::with_capacity(batch.len());
        for op in batch.drain(..) {
            self.held.apply(&op);
            if op.occupied {
                cmds.push(ops::put(ctx, &op.group, &[(true, &op.channel)]));
                sent.push(Sent::Occupy(op.group, op.channel));
            } else {
                cmds.push(ops::vacate(ctx, &op.group, &op.channel));
                sent.push(Sent::Vacate(op.group, op.channel));
            }
        }
        self.send(&cmds, sent).await
    }

    /// Puts every held channel again (one not yet taken by Redis as just got), then
    /// sweeps every group.
    async fn refresh(&mut self, ctx: &Ctx<'_>) -> bool {
        let mut cmds = Vec::new();
        let mut sent = Vec::new();
        for (group, chans) in &self.held.0 {
            let chans: Vec<(&String, &bool)> = chans.iter().collect();
            for chunk in chans.chunks(PUT_CHUNK) {
                let args: Vec<(bool, &str)> = chunk
                    .iter()
                    .map(|(c, taken)| (!**taken, c.as_str()))
                    .collect();
                cmds.push(ops::put(ctx, group, &args));
                let names = chunk.iter().map(|(c, _)| (*c).clone()).collect();
                sent.push(Sent::Refresh(group.clone(), names));
            }
        }
        for group in &self.groups {
            cmds.push(ops::sweep(ctx, group));
            sent.push(Sent::Sweep(group.clone()));
        }
        self.send(&cmds, sent).await
    }

    /// One round trip; reads each reply as what its command was. Returns false if
    /// anything failed (the caller reads the topology again and refreshes).
    async fn send(&mut self, cmds: &[Routed], sent: Vec<Sent>) -> bool {
        if cmds.is_empty() {
            return true;
        }
        let mut failed = Vec::new();
        let replies = self.pool.round_trip(cmds, &mut failed).await;
        for (addr, why) in &failed {
            tracing::warn!(error = %why, %addr, "broker occupancy: a redis node failed");
        }
        let mut ok = failed.is_empty();
        let mut first_error = None;
        for (s, r) in sent.into_iter().zip(replies) {
            let result = match s {
                Sent::Occupy(g, c) => ops::channels(r).map(|first| {
                    self.held.confirm(&g, &c, true);
                    if !first.is_empty() {
                        (self.report)(&g, &c, true);
                    }
                }),
                Sent::Vacate(g, c) => ops::emptied(r).map(|last| {
                    if last {
                        (self.report)(&g, &c, false);
                    }
                }),
                Sent::Refresh(g, names) => ops::channels(r).map(|back| {
                    for c in &names {
                        self.held.confirm(&g, c, true);
                    }
                    for c in back {
                        (self.report)(&g, &c, true);
                    }
                }),
                Sent::Sweep(g) => ops::channels(r).map(|gone| {
                    for c in gone {
                        (self.report)(&g, &c, false);
                    }
                }),
            };
            if let Err(e) = result {
                self.m.errors.increment(1);
                ok = false;
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            tracing::warn!(error = %e, "broker occupancy: redis did not take every operation");
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(group: &str, channel: &str, occupied: bool) -> Op {
        Op {
            group: group.into(),
            channel: channel.into(),
            occupied,
        }
    }

    #[test]
    fn held_follows_the_transitions_and_what_redis_took() {
        let mut h = Held::default();
        h.apply(&op("1", "a", true));
        h.apply(&op("1", "b", true));
        h.confirm("1", "a", true);
        assert!(h.0["1"]["a"]);
        assert!(!h.0["1"]["b"]);
        // Got again after it was left: not taken until Redis says so.
        h.apply(&op("1", "a", false));
        h.confirm("1", "a", true);
        assert!(!h.0["1"].contains_key("a"), "no entry made by a late reply");
        h.apply(&op("1", "a", true));
        assert!(!h.0["1"]["a"]);
        h.apply(&op("1", "a", false));
        h.apply(&op("1", "b", false));
        assert!(h.0.is_empty(), "an empty group is dropped");
    }
}
