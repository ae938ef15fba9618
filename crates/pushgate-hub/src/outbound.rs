//! A connection's bounded outbound queue.
//!
//! The queue lives in the shard's state, under the shard's lock, so the fan-out loop
//! pushes into it without taking another lock. The connection's writer swaps the whole
//! queue out in one step and writes it with one vectored write. The writer is woken
//! only when the queue goes from empty to non-empty, so a burst of publications costs
//! one wake-up per connection, not one per message. A run of publications to every
//! connection, or to one channel, can be queued as one entry holding their frames back
//! to back ([`Outbound::push_run`]): one entry's memory, clone and `iovec` for the run
//! (docs/benchmarks.md, "Burst: a run of publications, one entry").

use std::collections::VecDeque;
use std::task::Waker;

use bytes::Bytes;

use crate::close::CloseReason;
use crate::config::SlowPolicy;

/// The outcome of offering one frame to a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The connection is closing; the frame was not queued.
    Closed,
    /// The queue was full and the policy dropped the frame.
    Dropped,
    /// The queue was full and the policy closed the connection.
    Disconnected,
}

/// Bounds and policy shared by every queue of a shard.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frames: usize,
    pub max_bytes: usize,
    pub policy: SlowPolicy,
}

/// Frames waiting for a connection's writer. Allocates nothing while empty.
#[derive(Debug, Default)]
pub struct Outbound {
    frames: VecDeque<Bytes>,
    /// Bytes queued (u32: `queue_max_bytes` is validated to fit; keeps the entry small).
    bytes: u32,
    /// Frames queued beyond one per entry (runs queued by `push_run`). u16 fits in the
    /// padding, so the connection's entry does not grow; a run that would overflow it
    /// is not merged.
    merged: u16,
    /// The writer's waker, registered when it found the queue empty. Kept once woken
    /// (woken by reference): the writer registers the same waker again and again, and
    /// taking it would cost a clone and a drop of it per delivery (two atomic updates
    /// of a cold cache line: 0.7 % of the server's CPU in the steady state, `perf`).
    waker: Option<Waker>,
    /// Set when the connection must close; the writer sends the close frame.
    pub(crate) closing: Option<CloseReason>,
}

impl Outbound {
    /// Offers a frame, applying the slow-consumer policy if the queue is full.
    #[inline]
    pub fn push(&mut self, frame: Bytes, limits: &Limits) -> Push {
        if self.closing.is_some() {
            return Push::Closed;
        }
        if self.len() >= limits.max_frames || self.bytes as usize + frame.len() > limits.max_bytes {
            return match limits.policy {
                SlowPolicy::DropNewest => Push::Dropped,
                SlowPolicy::Disconnect => {
                    self.close(CloseReason::SlowConsumer);
                    Push::Disconnected
                }
            };
        }
        self.enqueue(frame);
        Push::Queued
    }

    /// Queues `count` frames encoded back to back in `run` as one entry, if all of them
    /// fit the queue's bounds: `Some(Queued)`, or `Some(Closed)` if the connection is
    /// closing. `None` if they do not all fit: the caller then offers them one by one
    /// with [`Outbound::push`], which applies the slow-consumer policy frame by frame
    /// exactly as if they had never been joined.
    #[inline]
    pub fn push_run(&mut self, run: &Bytes, count: usize, limits: &Limits) -> Option<Push> {
        if self.closing.is_some() {
            return Some(Push::Closed);
        }
        let merged = u16::try_from(self.merged as usize + count - 1).ok()?;
        if self.len() + count > limits.max_frames
            || self.bytes as usize + run.len() > limits.max_bytes
        {
            return None;
        }
        self.merged = merged;
        self.enqueue(run.clone());
        Some(Push::Queued)
    }

    /// Appends an entry that fits, waking the writer if the queue was empty.
    #[inline]
    fn enqueue(&mut self, entry: Bytes) {
        self.bytes += entry.len() as u32;
        self.frames.push_back(entry);
        if self.frames.len() == 1 {
            self.wake();
        }
    }

    /// Frames queued (an entry of `push_run` counts each of its frames).
    pub(crate) fn len(&self) -> usize {
        self.frames.len() + self.merged as usize
    }

    /// Marks the connection for closing and wakes its writer. The first reason wins.
    pub fn close(&mut self, reason: CloseReason) {
        if self.closing.is_none() {
            self.closing = Some(reason);
            if reason.is_abortive() {
                // Nobody will read these; free them now.
                self.frames = VecDeque::new();
                self.bytes = 0;
                self.merged = 0;
            }
            self.wake();
        }
    }

    /// Wakes the writer for work kept outside the queue (a recovery backlog).
    pub(crate) fn notify(&mut self) {
        self.wake();
    }

    fn wake(&mut self) {
        if let Some(w) = &self.waker {
            w.wake_by_ref();
        }
    }

    /// Moves every queued frame into `out` (which the writer has emptied), keeping the
    /// writer's spare allocation for the next burst.
    pub fn take_into(&mut self, out: &mut VecDeque<Bytes>) -> bool {
        if self.frames.is_empty() {
            return false;
        }
        debug_assert!(out.is_empty());
        std::mem::swap(&mut self.frames, out);
        self.bytes = 0;
        self.merged = 0;
        true
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn register(&mut self, waker: &Waker) {
        match &self.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => self.waker = Some(waker.clone()),
        }
    }

    /// Releases the queue's allocation if it is empty (called by the idle sweep).
    pub fn shrink_if_idle(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            self.frames = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(policy: SlowPolicy) -> Limits {
        Limits {
            max_frames: 2,
            max_bytes: 10,
            policy,
        }
    }

    #[test]
    fn bounded_by_frames_then_disconnects() {
        let l = limits(SlowPolicy::Disconnect);
        let mut q = Outbound::default();
        assert_eq!(q.push(Bytes::from_static(b"a"), &l), Push::Queued);
        assert_eq!(q.push(Bytes::from_static(b"b"), &l), Push::Queued);
        assert_eq!(q.push(Bytes::from_static(b"c"), &l), Push::Disconnected);
        assert_eq!(q.closing, Some(CloseReason::SlowConsumer));
        assert!(q.is_empty(), "an abortive close frees the queue");
        assert_eq!(q.push(Bytes::from_static(b"d"), &l), Push::Closed);
    }

    #[test]
    fn bounded_by_bytes_and_drop_policy_keeps_the_connection() {
        let l = limits(SlowPolicy::DropNewest);
        let mut q = Outbound::default();
        assert_eq!(q.push(Bytes::from_static(b"123456"), &l), Push::Queued);
        assert_eq!(q.push(Bytes::from_static(b"123456"), &l), Push::Dropped);
        assert_eq!(q.closing, None);
        let mut out = VecDeque::new();
        assert!(q.take_into(&mut out));
        assert_eq!(out.len(), 1);
        assert_eq!(q.push(Bytes::from_static(b"123456"), &l), Push::Queued);
    }

    #[test]
    fn a_run_is_one_entry_counted_as_its_frames() {
        let l = Limits {
            max_frames: 4,
            max_bytes: 100,
            policy: SlowPolicy::DropNewest,
        };
        let mut q = Outbound::default();
        assert_eq!(
            q.push_run(&Bytes::from_static(b"abc"), 3, &l),
            Some(Push::Queued)
        );
        assert_eq!(q.len(), 3);
        // Two more frames would make five: not joined, and the caller goes frame by frame.
        assert_eq!(q.push_run(&Bytes::from_static(b"de"), 2, &l), None);
        assert_eq!(q.push(Bytes::from_static(b"d"), &l), Push::Queued);
        assert_eq!(q.push(Bytes::from_static(b"e"), &l), Push::Dropped);
        let mut out = VecDeque::new();
        assert!(q.take_into(&mut out));
        assert_eq!(out, [Bytes::from_static(b"abc"), Bytes::from_static(b"d")]);
        assert_eq!(q.len(), 0, "taking the queue resets the count");
        // Bounded by bytes too.
        let small = Limits { max_bytes: 4, ..l };
        assert_eq!(q.push_run(&Bytes::from_static(b"abcde"), 2, &small), None);
        q.close(CloseReason::Shutdown);
        assert_eq!(
            q.push_run(&Bytes::from_static(b"ab"), 2, &l),
            Some(Push::Closed)
        );
    }

    #[test]
    fn the_writer_is_woken_once_per_empty_queue_and_its_waker_kept() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        #[derive(Default)]
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.wake_by_ref();
            }
            fn wake_by_ref(self: &Arc<Self>) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let l = Limits {
            max_frames: 8,
            max_bytes: 100,
            policy: SlowPolicy::DropNewest,
        };
        let mut q = Outbound::default();
        let mut out = VecDeque::new();
        for round in 1..=3 {
            q.register(&waker);
            assert_eq!(Arc::strong_count(&count), 3, "one clone, kept: {round}");
            for _ in 0..3 {
                q.push(Bytes::from_static(b"a"), &l);
            }
            assert_eq!(count.0.load(Ordering::Relaxed), round, "once per burst");
            assert_eq!(Arc::strong_count(&count), 3, "woken by reference, kept");
            assert!(q.take_into(&mut out));
            out.clear();
        }
        // Taken and not registered again (the writer is busy writing): the next frame
        // still wakes it.
        q.push(Bytes::from_static(b"a"), &l);
        assert_eq!(count.0.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn graceful_close_keeps_queued_frames_for_flushing() {
        let l = limits(SlowPolicy::Disconnect);
        let mut q = Outbound::default();
        q.push(Bytes::from_static(b"a"), &l);
        q.close(CloseReason::Shutdown);
        assert!(!q.is_empty());
    }
}
