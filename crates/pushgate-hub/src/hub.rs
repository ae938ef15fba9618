//! The hub: the shards, connection ids, and the entry point for publications.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use pushgate_protocol::{
    encode_positioned, encode_publication, validate_channel, validate_user, ConnId, Position,
};
use tokio::sync::{mpsc, oneshot};

use crate::close::CloseReason;
use crate::config::HubConfig;
use crate::dialect::Dialect;
use crate::fanout::{ChannelFrame, Job, Route, Stamp};
use crate::handle::SubscribeError;
use crate::history::{History, Rules};
use crate::interest::Interest;
use crate::presence::{Presence, PresenceRule};
use crate::publication::{Publication, PublishError, PublishReport, Target};
use crate::shard::{AdminReport, Shard};

/// Depth of each shard's publication queue: a full queue makes publishers wait.
const SHARD_QUEUE: usize = 1024;

/// Totals across the shards of this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub connections: usize,
    /// Distinct channels with at least one subscriber on this node.
    pub channels: usize,
    pub subscriptions: usize,
    pub per_shard: Vec<usize>,
}

/// The sharded hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<HubConfig>,
    shards: Vec<Arc<Shard>>,
    queues: Vec<mpsc::Sender<Arc<Job>>>,
    next_id: AtomicU64,
    hasher: ahash::RandomState,
    closed: AtomicBool,
    fanout_duration: metrics::Histogram,
    publications: Mutex<Vec<((&'static str, &'static str), metrics::Counter)>>,
    pending: AtomicUsize,
    interest: Arc<Interest>,
    history: Option<Arc<History>>,
    presence: Option<Arc<Presence>>,
    /// The second client protocol, once installed (`dialect.rs`).
    dialect: OnceLock<Arc<dyn Dialect>>,
}

impl Hub {
    /// Builds the shards. Each one's worker loop ([`Shard::run`]) must be spawned by the
    /// caller on the thread that drives that shard.
    pub fn new(config: HubConfig) -> Hub {
        let config = Arc::new(config);
        let n = config.shards.max(1);
        let interest = Arc::new(Interest::new(config.track_interest));
        let history = (!config.history.is_empty()).then(|| {
            Arc::new(History::new(
                Rules::new(config.history.clone()),
                config.history_max_bytes,
                n,
                config.positions_from_broker,
            ))
        });
        let presence = (!config.presence.is_empty()).then(|| {
            let rules: Vec<PresenceRule> = config.presence.clone();
            Arc::new(Presence::new(rules))
        });
        let (mut shards, mut queues) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let (tx, rx) = mpsc::channel(SHARD_QUEUE);
            shards.push(Arc::new(Shard::new(
                i,
                config.clone(),
                interest.clone(),
                history.clone(),
                presence.clone(),
                rx,
            )));
            queues.push(tx);
        }
        Hub {
            inner: Arc::new(Inner {
                config,
                shards,
                queues,
                next_id: AtomicU64::new(1),
                // Fixed seeds: a connection id maps to the same shard for the life of the process.
                hasher: ahash::RandomState::with_seeds(0x70, 0x75, 0x73, 0x68),
                closed: AtomicBool::new(false),
                fanout_duration: metrics::histogram!("pushgate_fanout_duration_seconds"),
                publications: Mutex::new(Vec::new()),
                pending: AtomicUsize::new(0),
                interest,
                history,
                presence,
                dialect: OnceLock::new(),
            }),
        }
    }

    /// Installs the node's second client protocol (Pusher): its connections get
    /// publications and presence events in its form. Only the first one counts; install
    /// it before serving its connections.
    pub fn install_dialect(&self, dialect: Arc<dyn Dialect>) {
        let _ = self.inner.dialect.set(dialect);
    }

    /// The installed second protocol, if any.
    pub fn dialect(&self) -> Option<&Arc<dyn Dialect>> {
        self.inner.dialect.get()
    }

    /// The node's presence (`None` without presence rules). Its events task
    /// ([`Presence::run`]) must be spawned by the caller.
    pub fn presence(&self) -> Option<&Arc<Presence>> {
        self.inner.presence.as_ref()
    }

    /// The node's channel history (`None` without history rules).
    pub fn history(&self) -> Option<&Arc<History>> {
        self.inner.history.as_ref()
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// The channels and users this node follows (tracked only with `track_interest`).
    pub fn interest(&self) -> &Arc<Interest> {
        &self.inner.interest
    }

    /// Checks a publication as [`Hub::publish`] would, without encoding or sending it:
    /// what a cluster broker does before putting it on the bus. Every refusal is
    /// counted in `pushgate_publications_refused_total{reason}`.
    pub fn validate<C>(&self, target: &Target<C>, payload_len: usize) -> Result<(), PublishError> {
        let check = || {
            if self.inner.closed.load(Ordering::Acquire) {
                return Err(PublishError::ShuttingDown);
            }
            let max = self.inner.config.max_payload;
            if payload_len > max {
                return Err(PublishError::TooLarge(payload_len, max));
            }
            // The width first: nothing below walks a list longer than its limit.
            crate::publication::check_width(target.kind(), target.len())?;
            match target {
                Target::All => Ok(()),
                _ if target.is_empty() => Err(PublishError::NoTarget),
                Target::Channels(chs) => chs.iter().try_for_each(|ch| {
                    validate_channel(ch).map_err(|error| PublishError::BadChannel {
                        name: crate::publication::shown(ch),
                        error,
                    })
                }),
                Target::Users(users) => users.iter().try_for_each(|u| {
                    validate_user(u).map_err(|error| PublishError::BadUser {
                        name: crate::publication::shown(u),
                        error,
                    })
                }),
                Target::Conns(_) => Ok(()),
            }
        };
        let checked = check();
        if let Err(e) = &checked {
            e.count();
        }
        checked
    }

    /// Every shard's index (a job for all of them).
    pub(crate) fn all_shards(&self) -> Vec<usize> {
        (0..self.inner.shards.len()).collect()
    }

    pub fn shards(&self) -> &[Arc<Shard>] {
        &self.inner.shards
    }

    /// Whether publications wait in the queue of shard `index` (or have a place in it
    /// reserved): tells the shard's other tasks to let its fan-out loop run.
    pub fn publications_waiting(&self, index: usize) -> bool {
        let queue = &self.inner.queues[index];
        queue.capacity() < queue.max_capacity()
    }

    /// Allocates a connection id and the shard that will own the connection.
    pub fn next_conn(&self) -> (ConnId, &Arc<Shard>) {
        let id = ConnId(self.inner.next_id.fetch_add(1, Ordering::Relaxed));
        (id, self.shard_for(id))
    }

    /// The shard that owns `id`.
    pub fn shard_for(&self, id: ConnId) -> &Arc<Shard> {
        let h = self.inner.hasher.hash_one(id.0);
        &self.inner.shards[(h % self.inner.shards.len() as u64) as usize]
    }

    /// Publishes to this node's connections and waits until every involved shard has
    /// enqueued it. Refused publications enqueue nothing.
    pub async fn publish(
        &self,
        p: Publication,
        source: &'static str,
    ) -> Result<PublishReport, PublishError> {
        self.submit(p, source).await?.report().await
    }

    /// The first half of [`Hub::publish`]: validates the publication and hands it to
    /// every involved shard's queue (waiting while a queue is full). Publications
    /// submitted one after another reach each shard in that order, so a publisher can
    /// keep several in flight and await their reports afterwards, in order.
    pub async fn submit(
        &self,
        p: Publication,
        source: &'static str,
    ) -> Result<Submitted, PublishError> {
        let route = self.route(&p)?;
        self.count_publication(p.target.kind(), source);
        let involved: Vec<usize> = match &route {
            Route::Conns(ids, _) => {
                let mut v: Vec<usize> = ids.iter().map(|id| self.shard_for(*id).id()).collect();
                v.sort_unstable();
                v.dedup();
                v
            }
            _ => (0..self.inner.shards.len()).collect(),
        };
        if involved.is_empty() {
            return Ok(Submitted {
                report: None,
                positions: Vec::new(),
            });
        }
        let pending = self.pending();
        let permits = self.reserve(&involved).await?;
        let (job, rx) = self.job(route, p.exclude, permits.len(), Some(pending));
        let positions = self.stamp_and_send(job, &p.payload, permits);
        Ok(Submitted {
            report: Some(rx),
            positions,
        })
    }

    /// Counts a publication as pending until the guard is dropped.
    pub(crate) fn pending(&self) -> PendingGuard {
        self.inner.pending.fetch_add(1, Ordering::Relaxed);
        PendingGuard(self.inner.clone())
    }

    /// Reserves a slot in every involved shard's queue first, so that the job can
    /// then be sent to all at once: if the caller gives up (a publisher disconnects)
    /// while waiting for a slot, no shard has the publication, rather than some of
    /// them. Slots are taken in shard order, so concurrent publishers cannot deadlock.
    pub(crate) async fn reserve(
        &self,
        involved: &[usize],
    ) -> Result<Vec<mpsc::Permit<'_, Arc<Job>>>, PublishError> {
        let mut permits = Vec::with_capacity(involved.len());
        for &i in involved {
            match self.inner.queues[i].reserve().await {
                Ok(permit) => permits.push(permit),
                Err(_) => return Err(PublishError::ShuttingDown),
            }
        }
        Ok(permits)
    }

    /// A job for `shards` shards, and where its totals will be reported; it holds
    /// `pending` until every shard has enqueued it.
    pub(crate) fn job(
        &self,
        route: Route,
        exclude: Option<ConnId>,
        shards: usize,
        pending: Option<PendingGuard>,
    ) -> (Job, oneshot::Receiver<PublishReport>) {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            route,
            deflated: Default::default(),
            exclude,
            remaining: AtomicUsize::new(shards),
            enqueued: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            started: std::time::Instant::now(),
            done: Mutex::new(Some((tx, pending))),
            duration: self.inner.fanout_duration.clone(),
            sse: Default::default(),
            dialect: self.inner.dialect.get().cloned(),
            alt: Default::default(),
        };
        (job, rx)
    }

    /// Gives each history channel of the publication its offset, keeps it, and hands
    /// the job to the shards, all under the channels' stream locks (taken in name
    /// order): so every shard's queue holds a channel's publications in offset order,
    /// which recovery relies on. Without history channels it just sends.
    fn stamp_and_send(
        &self,
        mut job: Job,
        payload: &pushgate_protocol::Payload,
        permits: Vec<mpsc::Permit<'_, Arc<Job>>>,
    ) -> Vec<(String, Position)> {
        let mut positions = Vec::new();
        let mut held = Vec::new();
        let history = self.inner.history.as_ref().filter(|h| !h.learnt());
        if let (Route::Channels(list), Some(history)) = (&mut job.route, history) {
            let now = tokio::time::Instant::now();
            let mut delta = 0;
            for c in list.iter_mut() {
                let Some(mut stream) = history.stream(&c.name) else {
                    continue;
                };
                let mut g = loop {
                    let g = stream.inner.lock_arc();
                    if !g.removed {
                        break g;
                    }
                    drop(g);
                    stream = history.stream(&c.name).expect("the channel has a rule");
                };
                let offset = g.top + 1;
                c.frame = encode_positioned(&c.name, offset, payload);
                delta += g.push(offset, c.frame.clone(), now);
                positions.push((c.name.clone(), g.position(offset)));
                c.stream = Some(Stamp {
                    stream,
                    generation: g.generation,
                    offset,
                    epoch: g.epoch.clone(),
                });
                held.push(g);
            }
            history.add_bytes(delta);
        }
        self.send(job, permits);
        drop(held);
        if let Some(history) = &self.inner.history {
            if !positions.is_empty() {
                history.enforce_bound();
            }
        }
        positions
    }

    /// Hands a job to the shards whose slots were reserved.
    pub(crate) fn send(&self, job: Job, permits: Vec<mpsc::Permit<'_, Arc<Job>>>) {
        let job = Arc::new(job);
        for permit in permits {
            permit.send(job.clone());
        }
    }

    /// Validates a publication and encodes its frames, once (those of history
    /// channels when their offsets are known, in [`Hub::stamp_and_send`]).
    fn route(&self, p: &Publication) -> Result<Route, PublishError> {
        self.validate(&p.target, p.payload.len())?;
        Ok(match &p.target {
            Target::All => Route::All(encode_publication(None, &p.payload)),
            Target::Channels(chs) => {
                // Sorted: history streams are locked in this order.
                let mut names = chs.clone();
                names.sort_unstable();
                names.dedup();
                // With positions from a cluster broker, `submit` never stamps: a
                // history channel's publications arrive through `submit_at`.
                let history = self.inner.history.as_deref().filter(|h| !h.learnt());
                let list = names
                    .into_iter()
                    .map(|name| {
                        let frame = match history {
                            Some(h) if h.is_history(&name) => bytes::Bytes::new(),
                            _ => encode_publication(Some(&name), &p.payload),
                        };
                        ChannelFrame {
                            name,
                            frame,
                            stream: None,
                            deflated: Default::default(),
                        }
                    })
                    .collect();
                Route::Channels(list)
            }
            Target::Users(users) => {
                let mut u = users.clone();
                u.sort_unstable();
                u.dedup();
                Route::Users(u, encode_publication(None, &p.payload))
            }
            Target::Conns(ids) => {
                let mut ids = ids.clone();
                ids.sort_unstable();
                ids.dedup();
                Route::Conns(ids, encode_publication(None, &p.payload))
            }
        })
    }

    pub(crate) fn count_publication(&self, target: &'static str, source: &'static str) {
        // One lookup per publication (not per recipient); handles are cached.
        let mut cache = self.inner.publications.lock();
        if let Some((_, c)) = cache.iter().find(|(k, _)| *k == (target, source)) {
            c.increment(1);
            return;
        }
        let c = metrics::counter!("pushgate_publications_total", "target" => target, "source" => source);
        c.increment(1);
        cache.push(((target, source), c));
    }

    /// Node-wide counts.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        let mut channels = ahash::AHashSet::new();
        for shard in &self.inner.shards {
            let (c, sub) = shard.counts_into(&mut channels);
            s.connections += c;
            s.subscriptions += sub;
            s.per_shard.push(c);
        }
        s.channels = channels.len();
        s
    }

    /// Queues a frame for one connection (a reply released by [`Interest`]); nothing
    /// if it is gone.
    pub fn send_to(&self, id: ConnId, frame: bytes::Bytes) {
        self.shard_for(id).send_to(id, frame);
    }

    /// Queues one frame (encoded once) for each of these connections, taking each
    /// involved shard's lock once; those gone are skipped.
    pub fn send_to_each(&self, ids: &[ConnId], frame: &bytes::Bytes) {
        let mut by_shard: Vec<Vec<ConnId>> = vec![Vec::new(); self.inner.shards.len()];
        for &id in ids {
            by_shard[self.shard_for(id).id()].push(id);
        }
        for (shard, ids) in self.inner.shards.iter().zip(by_shard) {
            if !ids.is_empty() {
                shard.send_to_each(&ids, frame);
            }
        }
    }

    /// Queues `frame` (if any) for each of these connections and `alt` (if any) for
    /// those of the dialect instead, taking each involved shard's lock once.
    pub fn send_to_each_alt(
        &self,
        ids: &[ConnId],
        frame: Option<&bytes::Bytes>,
        alt: Option<&bytes::Bytes>,
    ) {
        let mut by_shard: Vec<Vec<ConnId>> = vec![Vec::new(); self.inner.shards.len()];
        for &id in ids {
            by_shard[self.shard_for(id).id()].push(id);
        }
        for (shard, ids) in self.inner.shards.iter().zip(by_shard) {
            if !ids.is_empty() {
                shard.send_to_each_alt(&ids, frame, alt);
            }
        }
    }

    /// Closes one connection (any shard). Returns whether it was found.
    pub fn disconnect(&self, id: ConnId, reason: CloseReason) -> bool {
        self.shard_for(id).close(id, reason)
    }

    /// Closes one connection with an operator's close code (4000-4999, 1000 or 1001)
    /// and reason (at most 123 bytes). Returns whether it was found.
    pub fn disconnect_with(&self, id: ConnId, code: u16, reason: &str) -> bool {
        self.shard_for(id).close_with(id, code, reason)
    }

    /// Closes every connection of `user` with an operator's close code and reason.
    pub fn disconnect_user_with(&self, user: &str, code: u16, reason: &str) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.close_user_with(user, code, reason))
            .sum()
    }

    /// Makes one connection follow `channels` (already validated), server-side.
    /// `None` if the connection is not on this node.
    pub fn subscribe_conn(
        &self,
        id: ConnId,
        channels: &[String],
    ) -> Option<Result<(), SubscribeError>> {
        self.shard_for(id).subscribe_conn(id, channels)
    }

    /// Makes each connection of `user` follow `channels`; a connection that would
    /// exceed the subscription limit is left unchanged and counted as refused.
    pub fn subscribe_user(&self, user: &str, channels: &[String]) -> AdminReport {
        let mut r = AdminReport::default();
        for shard in &self.inner.shards {
            r.add(shard.subscribe_user(user, channels));
        }
        r
    }

    /// Makes one connection stop following `channels`. Returns whether it was found.
    pub fn unsubscribe_conn(&self, id: ConnId, channels: &[String]) -> bool {
        self.shard_for(id).unsubscribe_conn(id, channels)
    }

    /// Makes each connection of `user` stop following `channels`. Returns how many.
    pub fn unsubscribe_user(&self, user: &str, channels: &[String]) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.unsubscribe_user(user, channels))
            .sum()
    }

    /// Subscribers on this node of each channel whose name starts with `prefix`
    /// (only channels with at least one). Past `max` names it stops: the map then
    /// holds more than `max` names, some with partial counts (a bounded way to learn
    /// that there are too many).
    pub fn channel_counts(&self, prefix: &str, max: usize) -> ahash::AHashMap<Box<str>, usize> {
        let mut out = ahash::AHashMap::new();
        for s in &self.inner.shards {
            if out.len() > max {
                break;
            }
            s.channel_counts_into(prefix, max, &mut out);
        }
        out
    }

    /// Subscribers of `channel` on this node.
    pub fn channel_subscribers(&self, channel: &str) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.channel_subscribers(channel))
            .sum()
    }

    /// Connections of `user` on this node, in id order.
    pub fn user_conns(&self, user: &str) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self
            .inner
            .shards
            .iter()
            .flat_map(|s| s.user_conns(user))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Refuses further publications and closes every connection with `reason`;
    /// frames already queued are flushed first (for a graceful reason).
    pub fn close_all(&self, reason: CloseReason) {
        self.inner.closed.store(true, Ordering::Release);
        for shard in &self.inner.shards {
            shard.close_all(reason);
        }
    }

    /// Closes every connection with `reason`, spread evenly over `window` in a random
    /// order, so that clients of a restarting node do not all reconnect in the same
    /// second. Each client first gets what is queued for it. Publications are still
    /// accepted for the connections not yet closed; at the end the hub refuses them.
    pub async fn drain(&self, window: std::time::Duration, reason: CloseReason) {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let jitter = ahash::RandomState::with_seeds(seed, seed.rotate_left(17), 0x6a09, 0xbb67);
        let mut ids: Vec<(u64, ConnId)> = Vec::new();
        for shard in &self.inner.shards {
            ids.extend(
                shard
                    .conn_ids()
                    .into_iter()
                    .map(|id| (jitter.hash_one(id.0), id)),
            );
        }
        ids.sort_unstable();
        let n = ids.len();
        let start = tokio::time::Instant::now();
        let tick = std::time::Duration::from_millis(10);
        let mut done = 0;
        while done < n {
            let elapsed = start.elapsed();
            let due = if elapsed >= window || window.is_zero() {
                n
            } else {
                ((n as f64) * elapsed.as_secs_f64() / window.as_secs_f64()).ceil() as usize
            };
            for (_, id) in &ids[done..due.min(n)] {
                self.disconnect(*id, reason);
            }
            done = due.min(n).max(done);
            if done < n {
                tokio::time::sleep(tick).await;
            }
        }
        self.close_all(reason);
    }

    /// Publications accepted but not yet enqueued by every shard.
    pub fn pending_publications(&self) -> usize {
        self.inner.pending.load(Ordering::Relaxed)
    }
}

/// A publication handed to the shards, whose totals are not known yet.
/// Dropping it does not cancel the publication.
pub struct Submitted {
    pub(crate) report: Option<oneshot::Receiver<PublishReport>>,
    pub(crate) positions: Vec<(String, Position)>,
}

impl Submitted {
    /// The position of the publication in each of its history channels.
    pub fn positions(&self) -> &[(String, Position)] {
        &self.positions
    }

    /// Takes the positions out (before [`Submitted::report`]).
    pub fn take_positions(&mut self) -> Vec<(String, Position)> {
        std::mem::take(&mut self.positions)
    }

    /// Waits until every involved shard has enqueued it.
    pub async fn report(self) -> Result<PublishReport, PublishError> {
        match self.report {
            None => Ok(PublishReport::default()),
            Some(rx) => rx.await.map_err(|_| PublishError::ShuttingDown),
        }
    }
}

/// Counts a publication in [`Hub::pending_publications`] from its submission until
/// every involved shard has enqueued it (or it is dropped).
pub(crate) struct PendingGuard(Arc<Inner>);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}
