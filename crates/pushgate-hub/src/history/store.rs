//! The node's history store: streams by channel name, spread over locks by a hash of
//! the name, under one node-wide memory bound.
//!
//! When the bound is passed, whole streams nobody on this node follows go first,
//! least recently used first; then the kept publications of followed streams, least
//! recently used first (their positions stay, so their subscribers keep receiving; a
//! client resuming from before the cut is told `unrecovered`). Publications older than
//! their rule's ttl are dropped as they are met and by a periodic sweep that each
//! shard's worker runs over its share of the buckets.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use ahash::AHashMap;
use bytes::Bytes;
use metrics::{counter, gauge, Counter, Gauge};
use parking_lot::Mutex;
use pushgate_protocol::{decode_publication, Payload};
use tokio::time::Instant;

use super::rules::Rules;
use super::stream::{Stream, STREAM_OVERHEAD};

/// Lock buckets. A power of two well above the shard count, so that publishers to
/// different channels rarely meet.
const BUCKETS: usize = 64;
/// Most publications one history read returns.
pub const MAX_READ: usize = 1000;

type Bucket = Mutex<AHashMap<Box<str>, Arc<Stream>>>;

/// Channel history of one node.
pub struct History {
    rules: Rules,
    shards: usize,
    max_bytes: usize,
    buckets: Box<[Bucket]>,
    hasher: ahash::RandomState,
    bytes: AtomicUsize,
    streams: AtomicUsize,
    /// Source of new epochs: a per-process random key and a counter.
    epochs: ahash::RandomState,
    next_epoch: AtomicU64,
    started: Instant,
    evicting: Mutex<()>,
    /// Positions come from a cluster broker (Redis): streams start unsynced and
    /// offsets are learnt, never assigned here ([`super::cluster`]).
    learnt: bool,
    /// Channels whose stream a subscribe waits for, to be synced by the broker.
    sync_requests: Mutex<Vec<Box<str>>>,
    sync_requested: tokio::sync::Notify,
    m: Metrics,
}

struct Metrics {
    bytes: Gauge,
    streams: Gauge,
    evicted_streams: Counter,
    evicted_publications: Counter,
    expired: Counter,
    recovered: Counter,
    unrecovered: Counter,
    resets: Counter,
}

/// A page of a channel's history (the internal HTTP and gRPC `History` calls).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub epoch: String,
    /// The stream's last offset.
    pub offset: u64,
    /// Offset of the oldest publication still kept (`offset + 1` when none is).
    pub oldest: u64,
    pub publications: Vec<(u64, Payload)>,
}

impl History {
    /// A store for `rules`, bounded by `max_bytes`, serving `shards` shards; `learnt`
    /// when positions come from a cluster broker.
    pub fn new(rules: Rules, max_bytes: usize, shards: usize, learnt: bool) -> History {
        History {
            rules,
            shards: shards.max(1),
            max_bytes,
            buckets: (0..BUCKETS).map(|_| Mutex::default()).collect(),
            hasher: ahash::RandomState::new(),
            bytes: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
            epochs: ahash::RandomState::new(),
            next_epoch: AtomicU64::new(0),
            started: Instant::now(),
            evicting: Mutex::new(()),
            learnt,
            sync_requests: Mutex::new(Vec::new()),
            sync_requested: tokio::sync::Notify::new(),
            m: Metrics {
                bytes: gauge!("pushgate_history_bytes"),
                streams: gauge!("pushgate_history_streams"),
                evicted_streams: counter!("pushgate_history_evictions_total", "what" => "stream"),
                evicted_publications: counter!("pushgate_history_evictions_total", "what" => "publications"),
                expired: counter!("pushgate_history_expired_total"),
                recovered: counter!("pushgate_history_recoveries_total", "result" => "recovered"),
                unrecovered: counter!("pushgate_history_recoveries_total", "result" => "unrecovered"),
                resets: counter!("pushgate_history_resets_total"),
            },
        }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Whether `channel` keeps history.
    pub fn is_history(&self, channel: &str) -> bool {
        self.rules.for_channel(channel).is_some()
    }

    /// Whether positions come from a cluster broker rather than from this node.
    pub fn learnt(&self) -> bool {
        self.learnt
    }

    /// Asks the cluster broker to sync `channel`'s stream (a subscribe waits for it).
    pub(crate) fn request_sync(&self, channel: &str) {
        let mut r = self.sync_requests.lock();
        if !r.iter().any(|c| **c == *channel) {
            r.push(channel.into());
            drop(r);
            self.sync_requested.notify_one();
        }
    }

    /// The channels whose stream a subscribe waits for (see [`History::sync_requested`]).
    pub fn take_sync_requests(&self) -> Vec<Box<str>> {
        std::mem::take(&mut *self.sync_requests.lock())
    }

    /// Resolves when a sync was requested since the last call.
    pub async fn sync_requested(&self) {
        self.sync_requested.notified().await
    }

    /// The position of `channel`'s stream: its epoch and last offset, `None` if the
    /// channel keeps no history or (with a cluster broker) the stream is not synced.
    pub fn position(&self, channel: &str) -> Option<(Arc<str>, u64)> {
        let s = self.stream(channel)?;
        let g = s.inner.lock();
        g.synced.then(|| (g.epoch.clone(), g.top))
    }

    /// The node no longer follows `channel` on the cluster bus: its copy of the
    /// stream will fall behind, so the next subscriber waits for the next sync rather
    /// than be given a stale position (and then the whole gap, or `unrecoverable`).
    pub fn unfollowed(&self, channel: &str) {
        if let Some(s) = self.bucket(channel).lock().get(channel).cloned() {
            s.inner.lock().stale = true;
        }
    }

    pub(crate) fn count_reset(&self) {
        self.m.resets.increment(1);
    }

    fn bucket(&self, channel: &str) -> &Bucket {
        &self.buckets[(self.hasher.hash_one(channel) as usize) % BUCKETS]
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// A new epoch: 16 hex digits, different for every stream this process creates
    /// and, with overwhelming probability, from those of any earlier process.
    pub fn new_epoch(&self) -> Arc<str> {
        let n = self.next_epoch.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}", self.epochs.hash_one(n)).into()
    }

    /// The stream of `channel`, created if it has a rule and none exists yet.
    pub(crate) fn stream(&self, channel: &str) -> Option<Arc<Stream>> {
        self.lookup(channel, false)
    }

    /// Like [`History::stream`], and counts one more subscriber on this node, under
    /// the bucket lock so that eviction never removes a stream someone follows.
    pub(crate) fn attach(&self, channel: &str) -> Option<Arc<Stream>> {
        self.lookup(channel, true)
    }

    /// One subscriber fewer.
    pub(crate) fn detach(&self, channel: &str) {
        if let Some(s) = self.bucket(channel).lock().get(channel) {
            let _ = s
                .subscribers
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    fn lookup(&self, channel: &str, attach: bool) -> Option<Arc<Stream>> {
        let rule = self.rules.for_channel(channel)?;
        let mut map = self.bucket(channel).lock();
        let s = match map.get(channel) {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(Stream::new(
                    channel,
                    self.new_epoch(),
                    rule.size,
                    rule.ttl,
                    self.shards,
                    !self.learnt,
                ));
                map.insert(channel.into(), s.clone());
                self.add_bytes(STREAM_OVERHEAD as isize + channel.len() as isize);
                let n = self.streams.fetch_add(1, Ordering::Relaxed) + 1;
                self.m.streams.set(n as f64);
                s
            }
        };
        if attach {
            s.subscribers.fetch_add(1, Ordering::Relaxed);
        }
        s.last_used.store(self.now_ms(), Ordering::Relaxed);
        Some(s)
    }

    /// Accounts for bytes kept or freed; past the bound, evicts.
    pub(crate) fn add_bytes(&self, delta: isize) {
        let now = if delta >= 0 {
            self.bytes.fetch_add(delta as usize, Ordering::Relaxed) + delta as usize
        } else {
            let d = delta.unsigned_abs();
            self.bytes.fetch_sub(d, Ordering::Relaxed) - d
        };
        self.m.bytes.set(now as f64);
    }

    /// Evicts if the store is over its bound. Called by publishers after they release
    /// their stream locks; one evicts at a time, the others go on.
    pub(crate) fn enforce_bound(&self) {
        if self.bytes.load(Ordering::Relaxed) <= self.max_bytes {
            return;
        }
        let Some(_one) = self.evicting.try_lock() else {
            return;
        };
        let target = self.max_bytes / 10 * 9;
        let mut all: Vec<(bool, u64, Arc<Stream>)> = Vec::new();
        for b in self.buckets.iter() {
            for s in b.lock().values() {
                let followed = s.subscribers.load(Ordering::Relaxed) > 0;
                all.push((followed, s.last_used.load(Ordering::Relaxed), s.clone()));
            }
        }
        all.sort_unstable_by_key(|(followed, used, _)| (*followed, *used));
        for (_, _, s) in all {
            if self.bytes.load(Ordering::Relaxed) <= target {
                break;
            }
            if !self.remove_if_idle(&s) {
                let mut g = s.inner.lock();
                let n = g.len();
                let freed = g.clear();
                drop(g);
                if n > 0 {
                    self.m.evicted_publications.increment(n as u64);
                    self.add_bytes(-(freed as isize));
                }
            }
        }
    }

    /// Removes a stream nobody here follows. Returns whether it did. Locks the stream,
    /// then its bucket: the order publishers use (they look streams up while holding
    /// the locks of the streams before them).
    fn remove_if_idle(&self, s: &Arc<Stream>) -> bool {
        let mut g = s.inner.lock();
        let mut map = self.bucket(&s.name).lock();
        if s.subscribers.load(Ordering::Relaxed) > 0 {
            return false;
        }
        if g.removed || !map.get(&*s.name).is_some_and(|have| Arc::ptr_eq(have, s)) {
            return true; // already gone
        }
        map.remove(&*s.name);
        drop(map);
        g.removed = true;
        let freed = g.clear();
        drop(g);
        self.add_bytes(-((freed + STREAM_OVERHEAD + s.name.len()) as isize));
        let n = self.streams.fetch_sub(1, Ordering::Relaxed) - 1;
        self.m.streams.set(n as f64);
        self.m.evicted_streams.increment(1);
        true
    }

    /// Drops expired publications in shard `part`'s share of the buckets, and
    /// streams that are empty, followed by no one here and idle for their ttl (a
    /// client resuming one later is told `unrecovered`). Run by each shard's worker.
    pub fn sweep(&self, part: usize) {
        let now = Instant::now();
        let now_ms = self.now_ms();
        for b in self.buckets.iter().skip(part).step_by(self.shards) {
            let streams: Vec<Arc<Stream>> = b.lock().values().cloned().collect();
            for s in streams {
                let mut g = s.inner.lock();
                self.prune_locked(&mut g, now);
                let (empty, ttl_ms) = (g.len() == 0, g.ttl_ms());
                drop(g);
                let idle = now_ms.saturating_sub(s.last_used.load(Ordering::Relaxed)) >= ttl_ms;
                if empty && idle {
                    self.remove_if_idle(&s);
                }
            }
        }
    }

    /// Drops a locked stream's expired publications, keeping the count right.
    pub(crate) fn prune_locked(&self, g: &mut super::stream::Inner, now: Instant) {
        let before = g.bytes;
        let n = g.prune(now);
        if n > 0 {
            self.m.expired.increment(n as u64);
            self.add_bytes(-((before - g.bytes) as isize));
        }
    }

    pub(crate) fn count_recoveries(&self, recovered: usize, unrecovered: usize) {
        if recovered > 0 {
            self.m.recovered.increment(recovered as u64);
        }
        if unrecovered > 0 {
            self.m.unrecovered.increment(unrecovered as u64);
        }
    }

    /// Reads a channel's history: `None` if the channel has no history rule.
    pub fn read(&self, channel: &str, since: Option<u64>, limit: usize) -> Option<HistoryPage> {
        let s = self.stream(channel)?;
        let mut g = s.inner.lock();
        self.prune_locked(&mut g, Instant::now());
        let page = HistoryPage {
            epoch: g.epoch.to_string(),
            offset: g.top,
            oldest: g.oldest().unwrap_or(g.top + 1),
            publications: g
                .read(since, limit.min(MAX_READ))
                .into_iter()
                .filter_map(|(o, f): (u64, Bytes)| Some((o, decode_publication(&f)?)))
                .collect(),
        };
        Some(page)
    }

    /// Bytes counted now (tests, metrics).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}
