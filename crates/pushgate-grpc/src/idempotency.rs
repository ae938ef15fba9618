//! The idempotency window: a publication whose key was accepted within the last
//! `idempotency_ttl` is not published again. The window is shared by every stream of
//! the node, so a publisher that reconnects and resends what it had no ack for does
//! not deliver twice.
//!
//! A key is claimed when its publication is submitted. If that attempt is refused,
//! the claim is released and a retry publishes normally; a retry that arrives while
//! the first attempt is still in flight waits for its result.
//!
//! Memory is bounded three ways: keys are at most [`MAX_KEY_BYTES`] long (longer ones
//! are refused by the stream), and the window holds at most `capacity` keys and about
//! `max_bytes` bytes; beyond either, the oldest keys are forgotten before their ttl
//! (counted in `pushgate_grpc_idempotency_evicted_total`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::pb::PublishReply;

/// The longest idempotency key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// What one remembered key costs besides its own bytes (map and queue entries, the
/// outcome channel and its reply), rounded up: the window's byte count is an estimate
/// of its memory, not an exact figure.
const ENTRY_OVERHEAD: usize = 256;

/// The result of the first attempt with a key, once known.
type Outcome = watch::Receiver<Option<PublishReply>>;

/// Keys seen recently and what their publication was told.
pub struct IdempotencyWindow {
    ttl: Duration,
    capacity: usize,
    max_bytes: usize,
    state: Mutex<State>,
    /// Keys forgotten before their ttl because the window was full.
    evicted: Counter,
    /// The window's estimated size in bytes.
    bytes_gauge: Gauge,
}

#[derive(Default)]
struct State {
    /// key → (when claimed, a unique stamp, the outcome)
    keys: HashMap<Arc<str>, (Instant, u64, Outcome)>,
    /// Keys in claim order, for expiry; an entry whose stamp no longer matches the
    /// map was released or re-claimed and is skipped.
    order: VecDeque<(Arc<str>, u64)>,
    next_stamp: u64,
    /// Estimated bytes of the keys in `keys` (see [`ENTRY_OVERHEAD`]).
    bytes: usize,
}

impl State {
    fn remove(&mut self, key: &str) {
        if self.keys.remove(key).is_some() {
            self.bytes -= cost(key);
        }
    }
}

fn cost(key: &str) -> usize {
    key.len() + ENTRY_OVERHEAD
}

/// What to do with a keyed publication.
pub enum Check {
    /// First time: publish, then [`Claim::complete`] with the result.
    New(Claim),
    /// Seen: wait for (or take) the first attempt's result; do not publish.
    Seen(Outcome),
}

/// The right to publish under a key. Dropped without [`Claim::complete`] (the
/// attempt was refused), it releases the key.
pub struct Claim {
    window: Arc<IdempotencyWindow>,
    key: Arc<str>,
    stamp: u64,
    tx: Option<watch::Sender<Option<PublishReply>>>,
}

impl IdempotencyWindow {
    pub fn new(ttl: Duration, capacity: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(IdempotencyWindow {
            ttl,
            capacity: capacity.max(1),
            max_bytes: max_bytes.max(cost(&"k".repeat(MAX_KEY_BYTES))),
            state: Mutex::new(State::default()),
            evicted: metrics::counter!("pushgate_grpc_idempotency_evicted_total"),
            bytes_gauge: metrics::gauge!("pushgate_grpc_idempotency_bytes"),
        })
    }

    /// Claims `key` (at most [`MAX_KEY_BYTES`]: the caller refuses longer ones), or
    /// returns the outcome of the attempt that claimed it.
    pub fn check(self: &Arc<Self>, key: &str) -> Check {
        self.check_at(key, Instant::now())
    }

    fn check_at(self: &Arc<Self>, key: &str, now: Instant) -> Check {
        debug_assert!(key.len() <= MAX_KEY_BYTES);
        let mut st = self.state.lock();
        self.expire(&mut st, now, 0);
        if let Some((_, _, outcome)) = st.keys.get(key) {
            return Check::Seen(outcome.clone());
        }
        self.expire(&mut st, now, cost(key));
        let stamp = st.next_stamp;
        st.next_stamp += 1;
        let (tx, rx) = watch::channel(None);
        let key: Arc<str> = Arc::from(key);
        st.keys.insert(key.clone(), (now, stamp, rx));
        st.order.push_back((key.clone(), stamp));
        st.bytes += cost(&key);
        self.bytes_gauge.set(st.bytes as f64);
        Check::New(Claim {
            window: self.clone(),
            key,
            stamp,
            tx: Some(tx),
        })
    }

    /// Forgets keys older than the ttl, and the oldest ones until one more key and
    /// `room` more bytes fit (with `room` 0: only the expired ones).
    fn expire(&self, st: &mut State, now: Instant, room: usize) {
        while let Some((key, stamp)) = st.order.front() {
            let live = match st.keys.get(key) {
                Some((at, s, _)) if s == stamp => Some(*at),
                _ => None,
            };
            let full =
                room > 0 && (st.keys.len() + 1 > self.capacity || st.bytes + room > self.max_bytes);
            match live {
                None => {}
                Some(at) if now.duration_since(at) >= self.ttl => {
                    let key = key.clone();
                    st.remove(&key);
                }
                Some(_) if full => {
                    let key = key.clone();
                    st.remove(&key);
                    self.evicted.increment(1);
                }
                Some(_) => break,
            }
            st.order.pop_front();
        }
        self.bytes_gauge.set(st.bytes as f64);
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.state.lock().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The window's estimated size: each key's bytes plus a fixed overhead per key.
    pub fn bytes(&self) -> usize {
        self.state.lock().bytes
    }
}

impl Claim {
    /// Records the accepted result; later attempts with the key get it.
    pub fn complete(mut self, reply: &PublishReply) {
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(reply.clone()));
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.tx.is_some() {
            let mut st = self.window.state.lock();
            if matches!(st.keys.get(&self.key), Some((_, s, _)) if *s == self.stamp) {
                st.remove(&self.key);
                self.window.bytes_gauge.set(st.bytes as f64);
            }
        }
    }
}

/// Waits for the first attempt's result; `None` if it was refused.
pub async fn outcome(mut rx: Outcome) -> Option<PublishReply> {
    let waited = rx.wait_for(Option::is_some).await.map(|v| v.clone());
    match waited {
        Ok(v) => v,
        Err(_) => rx.borrow().clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(n: u64) -> PublishReply {
        PublishReply {
            enqueued: n,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_completed_key_is_seen_with_its_result() {
        let w = IdempotencyWindow::new(Duration::from_secs(60), 10, 1 << 20);
        let Check::New(claim) = w.check("k") else {
            panic!("first use is new")
        };
        let Check::Seen(early) = w.check("k") else {
            panic!("in flight is seen")
        };
        claim.complete(&reply(3));
        assert_eq!(outcome(early).await, Some(reply(3)));
        let Check::Seen(late) = w.check("k") else {
            panic!("completed is seen")
        };
        assert_eq!(outcome(late).await, Some(reply(3)));
    }

    #[tokio::test]
    async fn a_refused_attempt_releases_its_key() {
        let w = IdempotencyWindow::new(Duration::from_secs(60), 10, 1 << 20);
        let Check::New(claim) = w.check("k") else {
            panic!()
        };
        let Check::Seen(waiting) = w.check("k") else {
            panic!()
        };
        drop(claim);
        assert_eq!(outcome(waiting).await, None);
        assert!(matches!(w.check("k"), Check::New(_)));
    }

    #[test]
    fn keys_expire_after_the_ttl_and_beyond_the_capacity() {
        let w = IdempotencyWindow::new(Duration::from_secs(10), 2, 1 << 20);
        let t0 = Instant::now();
        for k in ["a", "b"] {
            let Check::New(c) = w.check_at(k, t0) else {
                panic!()
            };
            c.complete(&reply(1));
        }
        assert!(matches!(w.check_at("a", t0), Check::Seen(_)));
        // A third key pushes out the oldest.
        let Check::New(c) = w.check_at("c", t0) else {
            panic!()
        };
        c.complete(&reply(1));
        assert!(matches!(w.check_at("b", t0), Check::Seen(_)));
        assert_eq!(w.len(), 2);
        // After the ttl everything is new again.
        let later = t0 + Duration::from_secs(11);
        assert!(matches!(w.check_at("b", later), Check::New(_)));
    }

    #[test]
    fn the_oldest_keys_go_when_the_window_is_over_its_bytes() {
        // Room for three keys of 256 bytes.
        let w = IdempotencyWindow::new(Duration::from_secs(60), 1000, 3 * cost(&"k".repeat(256)));
        let t0 = Instant::now();
        let key = |i: usize| format!("{i:0>256}");
        for i in 0..10 {
            let Check::New(c) = w.check_at(&key(i), t0) else {
                panic!("{i} is new")
            };
            c.complete(&reply(1));
            assert!(w.bytes() <= 3 * cost(&key(0)), "{}", w.bytes());
        }
        assert_eq!(w.len(), 3);
        assert!(matches!(w.check_at(&key(9), t0), Check::Seen(_)));
        assert!(
            matches!(w.check_at(&key(0), t0), Check::New(_)),
            "forgotten"
        );
    }
}
