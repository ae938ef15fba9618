//! The in-process broker's idempotency window: a publication whose key was accepted
//! within the window is not published again, and its retry is answered with the first
//! attempt's outcome. (With Redis the window is kept in Redis, by the publish scripts,
//! so that it holds cluster-wide: `redis/script.rs`.)
//!
//! A key is claimed when its publication is submitted. If that attempt is refused,
//! the claim is released and a retry publishes normally; a retry that arrives while
//! the first attempt is in flight waits for its outcome.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::delivery::Delivery;

/// Most keys remembered; the oldest are forgotten first.
const CAPACITY: usize = 100_000;

/// Keys seen within the window and their first outcome.
pub struct Window {
    ttl: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// key → (when claimed, a unique stamp, the outcome once known)
    keys: HashMap<String, (Instant, u64, watch::Receiver<Option<Delivery>>)>,
    /// Keys in claim order; an entry whose stamp no longer matches was released.
    order: VecDeque<(String, u64)>,
    next: u64,
}

/// What to do with a keyed publication.
pub(crate) enum Check {
    /// First time: publish, then [`Claim::complete`].
    New(Claim),
    /// Seen: wait for the first attempt's outcome.
    Seen(watch::Receiver<Option<Delivery>>),
}

/// The right to publish under a key; dropped without [`Claim::complete`] (the attempt
/// was refused), it releases the key.
pub(crate) struct Claim {
    window: Arc<Window>,
    key: String,
    stamp: u64,
    tx: Option<watch::Sender<Option<Delivery>>>,
}

impl Window {
    pub fn new(ttl: Duration) -> Arc<Window> {
        Arc::new(Window {
            ttl,
            state: Mutex::new(State::default()),
        })
    }

    pub(crate) fn check(self: &Arc<Self>, key: &str) -> Check {
        let now = Instant::now();
        let mut st = self.state.lock();
        while let Some((k, stamp)) = st.order.front().cloned() {
            let live = st.keys.get(&k).filter(|(_, s, _)| *s == stamp);
            let expired = live.is_none_or(|(at, _, _)| now.duration_since(*at) >= self.ttl);
            let live = live.is_some();
            if !expired && st.keys.len() < CAPACITY {
                break;
            }
            st.order.pop_front();
            if live {
                st.keys.remove(&k);
            }
        }
        if let Some((_, _, rx)) = st.keys.get(key) {
            return Check::Seen(rx.clone());
        }
        let stamp = st.next;
        st.next += 1;
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
}

impl Claim {
    /// The publication was accepted with this outcome: retries get it.
    pub(crate) fn complete(mut self, d: &Delivery) {
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(d.clone()));
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.tx.is_some() {
            let mut st = self.window.state.lock();
            if st.keys.get(&self.key).is_some_and(|e| e.1 == self.stamp) {
                st.keys.remove(&self.key);
            }
        }
    }
}

/// The first attempt's outcome, marked as a duplicate; `None` if it was refused.
pub(crate) async fn outcome(mut rx: watch::Receiver<Option<Delivery>>) -> Option<Delivery> {
    let d = rx.wait_for(Option::is_some).await.ok()?.clone()?;
    Some(Delivery {
        local: Default::default(),
        duplicate: true,
        ..d
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_published_once_and_released_when_refused() {
        let w = Window::new(Duration::from_secs(60));
        let Check::New(claim) = w.check("k") else {
            panic!("first")
        };
        let Check::Seen(waiting) = w.check("k") else {
            panic!("in flight")
        };
        claim.complete(&Delivery {
            nodes: 1,
            ..Delivery::default()
        });
        let d = outcome(waiting).await.unwrap();
        assert!(d.duplicate && d.nodes == 1);
        // A refused attempt releases its key.
        let Check::New(claim) = w.check("r") else {
            panic!()
        };
        let Check::Seen(waiting) = w.check("r") else {
            panic!()
        };
        drop(claim);
        assert!(outcome(waiting).await.is_none());
        assert!(matches!(w.check("r"), Check::New(_)));
    }

    #[test]
    fn keys_expire() {
        let w = Window::new(Duration::ZERO);
        let Check::New(c) = w.check("k") else {
            panic!()
        };
        c.complete(&Delivery::default());
        assert!(matches!(w.check("k"), Check::New(_)), "the window is over");
    }
}
