//! The idempotency window: a publication whose key was accepted within the last
//! `idempotency_ttl` is not published again. The window is shared by every stream of
//! the node, so a publisher that reconnects and resends what it had no ack for does
//! not deliver twice.
//!
//! A key is claimed when its publication is submitted. If that attempt is refused,
//! the claim is released and a retry publishes normally; a retry that arrives while
//! the first attempt is still in flight waits for its result.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::pb::PublishReply;

/// The result of the first attempt with a key, once known.
type Outcome = watch::Receiver<Option<PublishReply>>;

/// Keys seen recently and what their publication was told.
pub struct IdempotencyWindow {
    ttl: Duration,
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// key → (when claimed, a unique stamp, the outcome)
    keys: HashMap<String, (Instant, u64, Outcome)>,
    /// Keys in claim order, for expiry; an entry whose stamp no longer matches the
    /// map was released or re-claimed and is skipped.
    order: VecDeque<(String, u64)>,
    next_stamp: u64,
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
    key: String,
    stamp: u64,
    tx: Option<watch::Sender<Option<PublishReply>>>,
}

impl IdempotencyWindow {
    pub fn new(ttl: Duration, capacity: usize) -> Arc<Self> {
        Arc::new(IdempotencyWindow {
            ttl,
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
        })
    }

    /// Claims `key`, or returns the outcome of the attempt that claimed it.
    pub fn check(self: &Arc<Self>, key: &str) -> Check {
        self.check_at(key, Instant::now())
    }

    fn check_at(self: &Arc<Self>, key: &str, now: Instant) -> Check {
        let mut st = self.state.lock();
        self.expire(&mut st, now, 0);
        if let Some((_, _, outcome)) = st.keys.get(key) {
            return Check::Seen(outcome.clone());
        }
        self.expire(&mut st, now, 1);
        let stamp = st.next_stamp;
        st.next_stamp += 1;
        let (tx, rx) = watch::channel(None);
        st.keys.insert(key.to_owned(), (now, stamp, rx));
        st.order.push_back((key.to_owned(), stamp));
        Check::New(Claim {
            window: self.clone(),
            key: key.to_owned(),
            stamp,
            tx: Some(tx),
        })
    }

    /// Forgets keys older than the ttl, and the oldest ones until `room` more fit.
    fn expire(&self, st: &mut State, now: Instant, room: usize) {
        while let Some((key, stamp)) = st.order.front() {
            let live = match st.keys.get(key) {
                Some((at, s, _)) if s == stamp => Some(*at),
                _ => None,
            };
            match live {
                None => {}
                Some(at)
                    if now.duration_since(at) >= self.ttl
                        || st.keys.len() + room > self.capacity =>
                {
                    st.keys.remove(key);
                }
                Some(_) => break,
            }
            st.order.pop_front();
        }
    }

    /// Keys currently remembered.
    pub fn len(&self) -> usize {
        self.state.lock().keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
                st.keys.remove(&self.key);
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
        let w = IdempotencyWindow::new(Duration::from_secs(60), 10);
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
        let w = IdempotencyWindow::new(Duration::from_secs(60), 10);
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
        let w = IdempotencyWindow::new(Duration::from_secs(10), 2);
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
}
