//! One history channel's stream: its epoch, the last offset assigned, the kept
//! publications (already-encoded frames, shared with the fan-out), and for each shard
//! the offset of the last publication that shard fanned out.
//!
//! That last part is what makes recovery exact without any per-recipient cost. A
//! publication is appended and handed to every shard's queue under the stream's lock,
//! so each queue receives a channel's publications in offset order. A shard records
//! the offset of each one it fans out (one atomic store per channel per publication,
//! under the shard's lock). A subscriber joining on that shard, under the same lock,
//! is sent the kept publications up to that recorded offset `L` and is put in the
//! channel's index: every publication after `L` is still ahead in the shard's queue
//! and reaches it live. Nothing is sent twice and nothing is skipped.
//!
//! With a cluster broker the positions come from Redis ([`super::cluster`]): a stream
//! starts unsynced, and each time it is synced (installed from Redis, a gap filled, a
//! reset to a new epoch) its `generation` rises and a job carrying it goes through
//! every shard's queue. A shard records the generation with the offset, and a
//! subscribe on a shard that has not processed the stream's current generation waits:
//! the offset it recorded belongs to an older state of the stream. On a single node
//! the generation stays 0.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use pushgate_protocol::Position;
use tokio::time::Instant;

/// Bytes counted for one kept publication beyond its frame (entry, ring slot).
const ENTRY_OVERHEAD: usize = 48;
/// Bytes counted for a stream itself (name, epoch, per-shard offsets, map slot).
pub(crate) const STREAM_OVERHEAD: usize = 256;

/// One history channel.
pub(crate) struct Stream {
    pub(crate) name: Box<str>,
    /// In an `Arc` so that a publisher can hold the guards of several streams at once.
    pub(crate) inner: Arc<Mutex<Inner>>,
    /// Per shard: offset of the last publication of this stream the shard fanned out.
    /// Written by the shard's worker and read by subscribes, both under that shard's lock.
    fanned: Box<[AtomicU64]>,
    /// Per shard: the generation of the last job of this stream the shard processed
    /// ([`NEVER`] before the first one, with a cluster broker). Same lock as `fanned`.
    fanned_gen: Box<[AtomicU64]>,
    /// Connections on this node following the channel (changed under the store's
    /// bucket lock when it rises, so a followed stream is never evicted whole).
    pub(crate) subscribers: AtomicUsize,
    /// Last publish or subscribe, in milliseconds of the store's clock (eviction order).
    pub(crate) last_used: AtomicU64,
}

/// The part of a stream behind its lock.
pub(crate) struct Inner {
    pub(crate) epoch: Arc<str>,
    /// The last offset assigned (0: none yet).
    pub(crate) top: u64,
    size: usize,
    ttl: Duration,
    /// Kept publications, oldest first, with consecutive offsets ending at `top`.
    entries: VecDeque<Entry>,
    /// Bytes counted for the entries.
    pub(crate) bytes: usize,
    /// Set when the store dropped the stream: a publisher holding it must look it up again.
    pub(crate) removed: bool,
    /// Whether the position (epoch, top) is known: always on a single node; with a
    /// cluster broker once the stream was synced from Redis.
    pub(crate) synced: bool,
    /// Cluster: the node stopped following the channel, so the copy may be behind
    /// Redis; subscribes wait for the next sync (which fills the gap for anyone who
    /// joined meanwhile).
    pub(crate) stale: bool,
    /// Raised by every sync from the cluster; jobs carry it (see the module doc).
    pub(crate) generation: u64,
}

/// The generation a shard has before it processed any job of a stream.
pub(crate) const NEVER: u64 = u64::MAX;

struct Entry {
    offset: u64,
    at: Instant,
    frame: Bytes,
}

/// What a subscriber asking to resume from a position gets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// The publications after the position, up to the shard's offset, in order.
    Recovered(Vec<Bytes>),
    /// The epoch changed, the position is unknown, or the gap fell out of the window.
    Unrecovered,
    /// The position is ahead of this shard (publications still in its queue): try
    /// again once the shard has fanned them out.
    Wait,
    /// The position is ahead of everything this node has (cluster only): it may be
    /// on its way from Redis, or never was published.
    Ahead,
}

impl Stream {
    /// A stream; `synced` false (a cluster node) until [`Inner::install`] gives it a
    /// position from Redis.
    pub(crate) fn new(
        name: &str,
        epoch: Arc<str>,
        size: usize,
        ttl: Duration,
        shards: usize,
        synced: bool,
    ) -> Stream {
        let first_gen = if synced { 0 } else { NEVER };
        Stream {
            name: name.into(),
            inner: Arc::new(Mutex::new(Inner {
                epoch,
                top: 0,
                size,
                ttl,
                entries: VecDeque::new(),
                bytes: 0,
                removed: false,
                synced,
                stale: false,
                generation: 0,
            })),
            fanned: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            fanned_gen: (0..shards).map(|_| AtomicU64::new(first_gen)).collect(),
            subscribers: AtomicUsize::new(0),
            last_used: AtomicU64::new(0),
        }
    }

    /// Records that `shard` fanned out the publication at `offset`, of the stream's
    /// `generation` (under its lock).
    #[inline]
    pub(crate) fn set_fanned(&self, shard: usize, generation: u64, offset: u64) {
        self.fanned[shard].store(offset, Ordering::Relaxed);
        self.fanned_gen[shard].store(generation, Ordering::Relaxed);
    }

    /// The generation and offset of the last publication `shard` fanned out (under
    /// its lock).
    pub(crate) fn fanned(&self, shard: usize) -> (u64, u64) {
        (
            self.fanned_gen[shard].load(Ordering::Relaxed),
            self.fanned[shard].load(Ordering::Relaxed),
        )
    }
}

impl Inner {
    /// Keeps a publication at `offset` (the next one: `top + 1`, or, when a node
    /// learns positions from a cluster, any later one, which drops the older entries
    /// since the gap cannot be served). Returns the change in counted bytes.
    pub(crate) fn push(&mut self, offset: u64, frame: Bytes, now: Instant) -> isize {
        let before = self.bytes;
        if offset != self.top + 1 {
            self.clear();
        }
        self.top = self.top.max(offset);
        self.bytes += frame.len() + ENTRY_OVERHEAD;
        self.entries.push_back(Entry {
            offset,
            at: now,
            frame,
        });
        while self.entries.len() > self.size {
            self.pop();
        }
        self.prune(now);
        self.bytes as isize - before as isize
    }

    /// Replaces the whole state with a snapshot from the cluster: `epoch`, the last
    /// offset `top`, and the publications Redis keeps (ascending offsets, each with
    /// the time it was published). Only the run of consecutive offsets ending at
    /// `top` is kept. Returns the change in counted bytes.
    pub(crate) fn install(
        &mut self,
        epoch: Arc<str>,
        top: u64,
        entries: Vec<(u64, Bytes, Instant)>,
        now: Instant,
    ) -> isize {
        let before = self.bytes;
        self.clear();
        self.epoch = epoch;
        self.top = top;
        let mut expect = top;
        let mut kept: Vec<(u64, Bytes, Instant)> = Vec::new();
        for e in entries.into_iter().rev() {
            if e.0 != expect || kept.len() == self.size {
                break;
            }
            expect -= 1;
            kept.push(e);
        }
        for (offset, frame, at) in kept.into_iter().rev() {
            self.bytes += frame.len() + ENTRY_OVERHEAD;
            self.entries.push_back(Entry { offset, at, frame });
        }
        self.prune(now);
        self.bytes as isize - before as isize
    }

    /// Appends publications learnt from the cluster that follow `top` (the
    /// consecutive ones, each with the time it was published). Returns the change in
    /// counted bytes.
    pub(crate) fn extend(&mut self, entries: &[(u64, Bytes, Instant)], now: Instant) -> isize {
        let before = self.bytes;
        for (offset, frame, at) in entries {
            debug_assert_eq!(*offset, self.top + 1);
            self.top = *offset;
            self.bytes += frame.len() + ENTRY_OVERHEAD;
            self.entries.push_back(Entry {
                offset: *offset,
                at: *at,
                frame: frame.clone(),
            });
            while self.entries.len() > self.size {
                self.pop();
            }
        }
        self.prune(now);
        self.bytes as isize - before as isize
    }

    /// Drops publications older than the ttl. Returns how many.
    pub(crate) fn prune(&mut self, now: Instant) -> usize {
        let mut n = 0;
        while self
            .entries
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.at) >= self.ttl)
        {
            self.pop();
            n += 1;
        }
        n
    }

    /// Drops every kept publication (the stream's position stays). Returns bytes freed.
    pub(crate) fn clear(&mut self) -> usize {
        let freed = self.bytes;
        self.entries = VecDeque::new();
        self.bytes = 0;
        freed
    }

    fn pop(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.frame.len() + ENTRY_OVERHEAD;
        }
    }

    pub(crate) fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn position(&self, offset: u64) -> Position {
        Position {
            epoch: self.epoch.to_string(),
            offset,
        }
    }

    /// What a subscriber resuming from `since` gets on a shard that fanned out up to
    /// `upto`. Call [`Inner::prune`] first. `learnt`: positions come from a cluster,
    /// where one beyond this node's top may still be on its way.
    pub(crate) fn recover(&self, since: &Position, upto: u64, learnt: bool) -> Recovery {
        if *since.epoch != *self.epoch {
            return Recovery::Unrecovered;
        }
        if since.offset > self.top {
            return if learnt {
                Recovery::Ahead
            } else {
                Recovery::Unrecovered
            };
        }
        if since.offset > upto {
            return Recovery::Wait;
        }
        if since.offset == upto {
            return Recovery::Recovered(Vec::new());
        }
        let frames: Vec<Bytes> = self
            .entries
            .iter()
            .filter(|e| e.offset > since.offset && e.offset <= upto)
            .map(|e| e.frame.clone())
            .collect();
        // Entries are consecutive, so the gap is whole exactly when it has every offset.
        if frames.len() as u64 == upto - since.offset {
            Recovery::Recovered(frames)
        } else {
            Recovery::Unrecovered
        }
    }

    /// The newest kept publication at or before `upto`.
    pub(crate) fn latest(&self, upto: u64) -> Option<Bytes> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.offset <= upto)
            .map(|e| e.frame.clone())
    }

    /// Kept publications after `since` (the first `limit`), or without `since` the
    /// newest `limit`, oldest first, with their offsets.
    pub(crate) fn read(&self, since: Option<u64>, limit: usize) -> Vec<(u64, Bytes)> {
        let pick = |e: &Entry| (e.offset, e.frame.clone());
        match since {
            Some(s) => self
                .entries
                .iter()
                .filter(|e| e.offset > s)
                .take(limit)
                .map(pick)
                .collect(),
            None => {
                let skip = self.entries.len().saturating_sub(limit);
                self.entries.iter().skip(skip).map(pick).collect()
            }
        }
    }

    /// Offset of the oldest kept publication, if any.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.entries.front().map(|e| e.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(size: usize, ttl_ms: u64) -> Stream {
        Stream::new(
            "c",
            "e1".into(),
            size,
            Duration::from_millis(ttl_ms),
            2,
            true,
        )
    }

    fn pos(epoch: &str, offset: u64) -> Position {
        Position {
            epoch: epoch.into(),
            offset,
        }
    }

    fn fill(s: &Stream, n: u64, now: Instant) {
        let mut g = s.inner.lock();
        for _ in 0..n {
            let o = g.top + 1;
            g.push(o, Bytes::from(o.to_string()), now);
        }
    }

    #[test]
    fn recovery_sends_exactly_the_gap_up_to_the_shard() {
        let now = Instant::now();
        let s = stream(100, 60_000);
        fill(&s, 10, now);
        let g = s.inner.lock();
        let got = |r: Recovery| match r {
            Recovery::Recovered(f) => f
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(got(g.recover(&pos("e1", 5), 8, false)), ["6", "7", "8"]);
        assert_eq!(
            got(g.recover(&pos("e1", 8), 8, false)),
            Vec::<String>::new()
        );
        assert_eq!(
            g.recover(&pos("e1", 9), 8, false),
            Recovery::Wait,
            "ahead of this shard"
        );
        assert_eq!(
            g.recover(&pos("e1", 11), 8, false),
            Recovery::Unrecovered,
            "never published"
        );
        assert_eq!(
            g.recover(&pos("e0", 5), 8, false),
            Recovery::Unrecovered,
            "another epoch"
        );
        assert_eq!(g.latest(8).as_deref(), Some(&b"8"[..]));
    }

    #[test]
    fn a_gap_out_of_the_window_is_unrecovered() {
        let now = Instant::now();
        let s = stream(3, 60_000);
        fill(&s, 10, now);
        let mut g = s.inner.lock();
        assert_eq!(g.oldest(), Some(8));
        assert_eq!(g.recover(&pos("e1", 6), 10, false), Recovery::Unrecovered);
        assert!(
            matches!(g.recover(&pos("e1", 7), 10, false), Recovery::Recovered(f) if f.len() == 3)
        );
        let later = now + Duration::from_millis(60_000);
        assert_eq!(g.prune(later), 3);
        assert_eq!(g.bytes, 0);
        assert_eq!(
            g.recover(&pos("e1", 7), 10, false),
            Recovery::Unrecovered,
            "expired"
        );
        assert_eq!(
            g.recover(&pos("e1", 10), 10, false),
            Recovery::Recovered(vec![]),
            "nothing missed"
        );
    }

    #[test]
    fn a_jump_in_learnt_offsets_drops_what_cannot_be_served() {
        let now = Instant::now();
        let s = stream(10, 60_000);
        fill(&s, 3, now);
        let mut g = s.inner.lock();
        g.push(7, Bytes::from_static(b"7"), now);
        assert_eq!((g.top, g.oldest(), g.len()), (7, Some(7), 1));
        assert_eq!(g.recover(&pos("e1", 3), 7, false), Recovery::Unrecovered);
        assert_eq!(g.read(None, 5), vec![(7, Bytes::from_static(b"7"))]);
    }

    #[test]
    fn an_installed_snapshot_keeps_the_consecutive_tail_within_the_size() {
        let now = Instant::now();
        let s = stream(3, 60_000);
        let mut g = s.inner.lock();
        let e = |o: u64| (o, Bytes::from(o.to_string()), now);
        // 4 is missing: only 5..=9 can be served, and the rule keeps 3.
        g.install(
            "e2".into(),
            9,
            [1, 2, 3, 5, 6, 7, 8, 9].map(e).to_vec(),
            now,
        );
        assert_eq!(
            (&*g.epoch, g.top, g.oldest(), g.len()),
            ("e2", 9, Some(7), 3)
        );
        // A publication of another state of the stream (older than its top) is dropped.
        g.install("e3".into(), 2, vec![e(1), e(2), e(3)], now);
        assert_eq!((g.top, g.len()), (2, 0));
        assert_eq!(
            g.recover(&pos("e3", 9), 2, true),
            Recovery::Ahead,
            "a cluster node may not have it yet"
        );
    }
}
