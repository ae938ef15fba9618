//! The fan-out loop: each shard's worker drains publications in batches and
//! enqueues a refcount clone of the pre-encoded frame into each target's queue
//! (of the shard's own copy of it when it goes to many: [`shard_copy`]).
//!
//! Nothing in the per-recipient loop allocates, hashes a string, awaits or takes
//! another lock: recipients are found by iterating the slab or a channel's slot
//! set, and a push is a bounds check plus a `VecDeque::push_back`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use pushgate_protocol::frame::{encode_frame, OpCode};
use pushgate_protocol::ConnId;
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};

use crate::compressed::{Compressor, Deflated};
use crate::dialect::{Dialect, DialectFrames};
use crate::history::Stream;
use crate::hub::PendingGuard;
use crate::outbound::{Limits, Push};
use crate::publication::PublishReport;
use crate::shard::{Conn, Shard, ShardState};
use crate::sse::SseFrames;

/// Most publications a shard takes from its queue per lock acquisition.
const BATCH: usize = 64;
/// How often subscribes that wait are retried when no batch comes to retry them.
const RETRY_WAITING: Duration = Duration::from_millis(100);

/// Recipients on one shard from which a channel's frame is worth a copy of its own.
const SHARD_COPY_MIN: usize = 32;

/// The shard's own copy of a frame it is about to queue for many connections.
///
/// Every queued clone of a `Bytes` increments one shared reference count. With the
/// frame shared by every shard, the shards' workers increment the same counter from
/// different cores at the same time and the cache line holding it moves between
/// them at each clone. A copy of the frame (one allocation, a few hundred bytes) keeps
/// the count on this shard's core: in a 10,000-connection burst the clones fell from
/// 3.5 % to 1.0 % of the server's CPU (docs/benchmarks.md, "A frame per shard").
fn shard_copy(frame: &Bytes) -> Bytes {
    Bytes::copy_from_slice(frame)
}

/// The frame of a publication to all.
fn to_all(job: &Job) -> &Bytes {
    match &job.route {
        Route::All(frame) => frame,
        _ => unreachable!("a run holds only publications to all"),
    }
}

/// The one channel of a publication to one channel, which can join a run of
/// publications to it; `None` for any other.
fn single_channel(job: &Job) -> Option<&ChannelFrame> {
    match &job.route {
        Route::Channels(list) if list.len() == 1 => Some(&list[0]),
        _ => None,
    }
}

/// A run's frames copied back to back into one buffer, for the recipients that can take
/// it as one queue entry: one clone, one queue slot and one `iovec` for the run instead
/// of one per publication (the bytes on the wire are the same).
struct Joined {
    buf: Bytes,
    frames: usize,
    /// The connections publications of the run exclude (almost always none).
    excluded: Vec<ConnId>,
}

impl Joined {
    /// `None` for a run of one.
    fn new(jobs: &[Arc<Job>], frames: &[Bytes]) -> Option<Joined> {
        (frames.len() > 1).then(|| {
            let mut buf = BytesMut::with_capacity(frames.iter().map(Bytes::len).sum());
            for frame in frames {
                buf.extend_from_slice(frame);
            }
            Joined {
                buf: buf.freeze(),
                frames: frames.len(),
                excluded: jobs.iter().filter_map(|j| j.exclude).collect(),
            }
        })
    }

    /// Queues the run as one entry for a plain WebSocket connection that no publication
    /// of the run excludes, if its queue takes the whole run, and counts it in `run`'s
    /// tallies. `false`: the caller offers the frames one by one (compression, SSE,
    /// the dialect, an exclusion, a queue without room for all of them), never slices
    /// of this buffer: a slice would keep the whole run in memory while its queue
    /// counts only the slice's bytes.
    #[inline]
    fn push(&self, c: &mut Conn, run: &mut [Tally], limits: &Limits) -> bool {
        if c.deflate != 0 || c.sse || c.alt || self.excluded.contains(&c.id) {
            return false;
        }
        let Some(p) = c.outbound.push_run(&self.buf, self.frames, limits) else {
            return false;
        };
        for t in run {
            t.count(p);
        }
        true
    }
}

/// A publication's routing, with its frames already encoded.
pub(crate) enum Route {
    All(Bytes),
    Channels(Vec<ChannelFrame>),
    Users(Vec<String>, Bytes),
    Conns(Vec<ConnId>, Bytes),
    /// A history stream synced from the cluster (`history::cluster`): its frames (a
    /// filled gap, or an `unrecoverable` notice) go to the channel's subscribers, then
    /// the shard records the stamp.
    Stream(String, Stamp, Vec<Bytes>),
}

/// A publication's frame for one channel.
pub(crate) struct ChannelFrame {
    pub name: String,
    /// The frame naming that channel (and, with history, the offset).
    pub frame: Bytes,
    /// History channels: where the publication is in the stream.
    pub stream: Option<Stamp>,
    /// `frame` compressed, made by the first recipient with permessage-deflate.
    pub deflated: Deflated,
}

/// Where a job leaves a history stream: the shard records it as the last it fanned
/// out (`history::stream`).
pub(crate) struct Stamp {
    pub stream: Arc<Stream>,
    pub generation: u64,
    pub offset: u64,
    /// The stream's epoch at that offset (SSE event ids name it).
    pub epoch: Arc<str>,
}

/// One publication on its way through the shards. The last shard to finish
/// reports the totals and records the fan-out duration.
pub(crate) struct Job {
    pub route: Route,
    /// The frame of `Route::All`, `Users` or `Conns` compressed, made by the first
    /// recipient with permessage-deflate.
    pub deflated: Deflated,
    pub exclude: Option<ConnId>,
    pub remaining: AtomicUsize,
    pub enqueued: AtomicU64,
    pub skipped: AtomicU64,
    pub started: std::time::Instant,
    /// Where the totals go once every shard is done, and the publication's count in
    /// [`crate::Hub::pending_publications`], released then whether or not anyone
    /// waits for the totals.
    pub done: Mutex<Option<(oneshot::Sender<PublishReport>, Option<PendingGuard>)>>,
    pub duration: metrics::Histogram,
    /// The publication's SSE events, built for the first SSE recipient (`sse.rs`).
    pub sse: SseFrames,
    /// The node's second protocol, if installed, and the publication's frames in it,
    /// built for its first recipient (`dialect.rs`).
    pub dialect: Option<Arc<dyn Dialect>>,
    pub alt: DialectFrames,
}

impl Job {
    fn finish_shard(&self, enqueued: u64, skipped: u64) {
        self.enqueued.fetch_add(enqueued, Ordering::Relaxed);
        self.skipped.fetch_add(skipped, Ordering::Relaxed);
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.duration.record(self.started.elapsed().as_secs_f64());
            if let Some((tx, pending)) = self.done.lock().take() {
                drop(pending);
                let _ = tx.send(PublishReport {
                    enqueued: self.enqueued.load(Ordering::Relaxed),
                    skipped: self.skipped.load(Ordering::Relaxed),
                });
            }
        }
    }
}

/// Per-shard tallies for one job.
#[derive(Default)]
struct Tally {
    enqueued: u64,
    skipped: u64,
    slow: u64,
    dropped: u64,
    /// Of `enqueued`, to SSE connections.
    sse: u64,
    /// Of `enqueued`, to connections of the dialect.
    alt: u64,
}

impl Tally {
    #[inline]
    fn push(&mut self, outbound: &mut crate::outbound::Outbound, frame: &Bytes, limits: &Limits) {
        self.count(outbound.push(frame.clone(), limits));
    }

    #[inline]
    fn count(&mut self, push: Push) {
        match push {
            Push::Queued => self.enqueued += 1,
            Push::Closed => self.skipped += 1,
            Push::Dropped => {
                self.skipped += 1;
                self.dropped += 1;
            }
            Push::Disconnected => {
                self.skipped += 1;
                self.slow += 1;
            }
        }
    }

    /// Offers a connection its transport's form of the frame: the WebSocket frame, the
    /// SSE event `sse` builds once for every SSE recipient, or the dialect's frame `alt`
    /// builds once for its recipients (none: the connection does not get it).
    #[inline]
    fn push_to<'a>(
        &mut self,
        c: &mut Conn,
        frame: &'a Bytes,
        sse: impl FnOnce() -> &'a Bytes,
        alt: impl FnOnce() -> Option<&'a Bytes>,
        limits: &Limits,
    ) {
        if c.alt {
            if let Some(f) = alt() {
                let before = self.enqueued;
                self.push(&mut c.outbound, f, limits);
                self.alt += self.enqueued - before;
            }
        } else if c.sse {
            let before = self.enqueued;
            self.push(&mut c.outbound, sse(), limits);
            self.sse += self.enqueued - before;
        } else {
            self.push(&mut c.outbound, frame, limits);
        }
    }
}

impl ShardState {
    /// Enqueues a batch of publications, returning each one's tally in order.
    ///
    /// Consecutive publications to every connection are fanned out together, one
    /// connection at a time: each connection's queue is fetched from memory once for
    /// the whole run instead of once per publication (with thousands of connections a
    /// queue is out of cache by the next publication: `Outbound::push` fell from 12-15 %
    /// to 6-8 % of a burst published on a gRPC stream, docs/benchmarks.md). Each
    /// connection still gets the frames in publication order.
    fn fan_out_batch(&mut self, batch: &[Arc<Job>], limits: &Limits, z: &Compressor) -> Vec<Tally> {
        let mut tallies = Vec::with_capacity(batch.len());
        let mut rest = batch;
        while let Some(first) = rest.first() {
            let to_all = rest
                .iter()
                .take_while(|j| matches!(j.route, Route::All(_)))
                .count();
            let to_one = single_channel(first).map_or(0, |c| {
                let same = |j: &&Arc<Job>| single_channel(j).is_some_and(|o| o.name == c.name);
                rest.iter().take_while(same).count()
            });
            if to_all > 0 {
                self.fan_out_to_all(&rest[..to_all], limits, z, &mut tallies);
                rest = &rest[to_all..];
            } else if to_one > 1 {
                self.fan_out_to_channel(&rest[..to_one], limits, z, &mut tallies);
                rest = &rest[to_one..];
            } else {
                tallies.push(self.fan_out(first, limits, z));
                rest = &rest[1..];
            }
        }
        tallies
    }

    /// Enqueues a run of publications to all (`Route::All`), appending their tallies.
    /// A run of several is also [`Joined`] for the connections that can take it as one
    /// queue entry.
    fn fan_out_to_all(
        &mut self,
        jobs: &[Arc<Job>],
        limits: &Limits,
        z: &Compressor,
        tallies: &mut Vec<Tally>,
    ) {
        let frames: Vec<Bytes> = jobs.iter().map(|job| shard_copy(to_all(job))).collect();
        let joined = Joined::new(jobs, &frames);
        let first = tallies.len();
        tallies.extend(jobs.iter().map(|_| Tally::default()));
        let run = &mut tallies[first..];
        for (_, c) in self.conns.iter_mut() {
            if joined.as_ref().is_some_and(|j| j.push(c, run, limits)) {
                continue;
            }
            for ((job, frame), t) in jobs.iter().zip(&frames).zip(run.iter_mut()) {
                if Some(c.id) != job.exclude {
                    let ws = job.deflated.pick(frame, c.deflate, z);
                    let alt = || job.alt.one(&job.dialect, frame);
                    t.push_to(c, ws, || job.sse.one(frame), alt, limits);
                }
            }
        }
    }

    /// Enqueues a run of two or more publications to the same one channel
    /// ([`single_channel`]), appending their tallies: the channel's subscribers are
    /// visited once for the run, and plain WebSocket ones get the run as one queue
    /// entry, as [`Self::fan_out_to_all`] does for everyone. With history, each frame
    /// carries its own offset; the stream learns the run's last one as this shard's
    /// fanned position before any recipient gets a frame (nothing can look in between:
    /// the shard's lock is held for the whole batch), as [`Self::fan_out`] does for one.
    fn fan_out_to_channel(
        &mut self,
        jobs: &[Arc<Job>],
        limits: &Limits,
        z: &Compressor,
        tallies: &mut Vec<Tally>,
    ) {
        let first = tallies.len();
        tallies.extend(jobs.iter().map(|_| Tally::default()));
        let chans: Vec<&ChannelFrame> = jobs
            .iter()
            .map(|j| single_channel(j).expect("a channel run holds publications to it"))
            .collect();
        let ShardState {
            conns,
            channels,
            shard,
            ..
        } = self;
        for s in chans.iter().filter_map(|c| c.stream.as_ref()) {
            s.stream.set_fanned(*shard, s.generation, s.offset);
        }
        let Some(slots) = channels.get(chans[0].name.as_str()) else {
            return;
        };
        let frames: Vec<Bytes> = chans
            .iter()
            .map(|c| match slots.len() >= SHARD_COPY_MIN {
                true => shard_copy(&c.frame),
                false => c.frame.clone(),
            })
            .collect();
        let joined = Joined::new(jobs, &frames);
        let run = &mut tallies[first..];
        for &slot in slots {
            let c = &mut conns[slot];
            if joined.as_ref().is_some_and(|j| j.push(c, run, limits)) {
                continue;
            }
            let each = jobs.iter().zip(&chans).zip(&frames).zip(run.iter_mut());
            for (((job, ch), frame), t) in each {
                if Some(c.id) != job.exclude {
                    let ws = ch.deflated.pick(frame, c.deflate, z);
                    let epoch = ch.stream.as_ref().map(|s| &s.epoch);
                    let sse = || job.sse.channel(0, 1, frame, epoch);
                    let alt = || job.alt.channel(&job.dialect, 0, 1, &ch.name, frame);
                    t.push_to(c, ws, sse, alt, limits);
                }
            }
        }
    }

    /// Enqueues one publication that is not to all to this shard's targets.
    fn fan_out(&mut self, job: &Job, limits: &Limits, z: &Compressor) -> Tally {
        let mut t = Tally::default();
        let exclude = job.exclude;
        let deflated = &job.deflated;
        let ShardState {
            conns,
            by_id,
            channels,
            users,
            shard,
            ..
        } = self;
        match &job.route {
            Route::All(_) => unreachable!("publications to all go through fan_out_to_all"),
            Route::Channels(list) => {
                let n = list.len();
                for (
                    i,
                    ChannelFrame {
                        name,
                        frame,
                        stream,
                        deflated,
                    },
                ) in list.iter().enumerate()
                {
                    if let Some(s) = stream {
                        // Before any recipient: a subscribe that joins after this
                        // batch resumes from here (history::stream explains why).
                        s.stream.set_fanned(*shard, s.generation, s.offset);
                    }
                    let Some(slots) = channels.get(name.as_str()) else {
                        continue;
                    };
                    let epoch = stream.as_ref().map(|s| &s.epoch);
                    let own;
                    let frame = if slots.len() >= SHARD_COPY_MIN {
                        own = shard_copy(frame);
                        &own
                    } else {
                        frame
                    };
                    for &slot in slots {
                        let c = &mut conns[slot];
                        if Some(c.id) != exclude {
                            let ws = deflated.pick(frame, c.deflate, z);
                            let sse = || job.sse.channel(i, n, frame, epoch);
                            let alt = || job.alt.channel(&job.dialect, i, n, name, frame);
                            t.push_to(c, ws, sse, alt, limits);
                        }
                    }
                }
            }
            Route::Users(names, frame) => {
                for name in names {
                    let Some(slots) = users.get(name.as_str()) else {
                        continue;
                    };
                    for &slot in slots {
                        let c = &mut conns[slot];
                        if Some(c.id) != exclude {
                            let ws = deflated.pick(frame, c.deflate, z);
                            let alt = || job.alt.one(&job.dialect, frame);
                            t.push_to(c, ws, || job.sse.one(frame), alt, limits);
                        }
                    }
                }
            }
            Route::Conns(ids, frame) => {
                for id in ids {
                    if Some(*id) == exclude {
                        continue;
                    }
                    if let Some(&slot) = by_id.get(id) {
                        let c = &mut conns[slot];
                        let ws = deflated.pick(frame, c.deflate, z);
                        let alt = || job.alt.one(&job.dialect, frame);
                        t.push_to(c, ws, || job.sse.one(frame), alt, limits);
                    }
                }
            }
            Route::Stream(name, s, frames) => {
                s.stream.set_fanned(*shard, s.generation, s.offset);
                if let Some(slots) = channels.get(name.as_str()) {
                    for frame in frames {
                        for &slot in slots {
                            // Gap fills and notices are pushgate.v1's: the dialect's
                            // connections do not recover history.
                            if !conns[slot].alt {
                                t.push(&mut conns[slot].outbound, frame, limits);
                            }
                        }
                    }
                }
            }
        }
        t
    }
}

impl Shard {
    /// The shard's worker loop: fan-out of publications and the heartbeat sweep.
    /// Runs on the shard's own thread until the hub is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut jobs = self.jobs.lock().take().expect("Shard::run is called once");
        let ping = encode_frame(OpCode::Ping, b"");
        let interval = self
            .config
            .heartbeat_interval
            .max(Duration::from_millis(10));
        let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(BATCH);
        // While subscribes wait: when to retry them if no batch does first.
        let mut retry: Option<Instant> = None;
        let far = || Instant::now() + Duration::from_secs(3600);
        loop {
            tokio::select! {
                n = jobs.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    if self.process(&mut batch) {
                        retry.get_or_insert_with(|| Instant::now() + RETRY_WAITING);
                    }
                }
                _ = tick.tick() => {
                    self.sweep(Instant::now(), &ping);
                    let history = self.state.lock().history.clone();
                    if let Some(h) = history {
                        h.sweep(self.id());
                    }
                }
                _ = self.waiting.notified() => {
                    retry.get_or_insert_with(|| Instant::now() + RETRY_WAITING);
                }
                _ = tokio::time::sleep_until(retry.unwrap_or_else(far)), if retry.is_some() => {
                    let mut st = self.state.lock();
                    st.retry_waiting(self.config.max_subscriptions_per_conn);
                    retry = (!st.waiting.is_empty()).then(|| Instant::now() + RETRY_WAITING);
                }
            }
        }
    }

    /// Fans out a batch of publications under one lock acquisition. Writers are woken
    /// during the batch but run only after it (same thread), so each writer finds
    /// every frame of the batch at once and writes them with one syscall. Returns
    /// whether subscribes still wait.
    fn process(&self, batch: &mut Vec<Arc<Job>>) -> bool {
        let results;
        let waiting;
        {
            let mut st = self.state.lock();
            results = st.fan_out_batch(batch, &self.limits, &self.compressor);
            if !st.waiting.is_empty() {
                st.retry_waiting(self.config.max_subscriptions_per_conn);
            }
            waiting = !st.waiting.is_empty();
        }
        let (mut delivered, mut slow, mut dropped, mut sse, mut alt) = (0, 0, 0, 0, 0);
        for (job, t) in batch.drain(..).zip(results) {
            delivered += t.enqueued;
            sse += t.sse;
            alt += t.alt;
            slow += t.slow;
            dropped += t.dropped;
            job.finish_shard(t.enqueued, t.skipped);
        }
        self.metrics.deliveries.increment(delivered);
        if sse > 0 {
            self.metrics.sse_deliveries.increment(sse);
        }
        if alt > 0 {
            self.metrics.dialect_deliveries.increment(alt);
        }
        if slow > 0 {
            self.metrics.slow_disconnects.increment(slow);
        }
        if dropped > 0 {
            self.metrics.dropped.increment(dropped);
        }
        waiting
    }
}
