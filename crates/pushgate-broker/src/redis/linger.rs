//! Channel keys no longer wanted, still followed for a while (`unfollow_linger_ms`), so
//! that a client that leaves and comes back (a reconnect, a page reload, a quick
//! unsubscribe-resubscribe) costs no `SUNSUBSCRIBE` and `SSUBSCRIBE` pair, and no
//! history re-read. A key wanted again within the linger simply stays followed; a key
//! whose time is up is unfollowed then if it is still unwanted. (User keys do not
//! linger: their subscriber count is what "online" reads.)
//!
//! Deadlines come in the order keys were let go (one fixed linger), so they are kept
//! in a queue: the next one is its front, and a key wanted again is only forgotten in
//! the map (its queue entry is skipped when it comes up).

use std::collections::VecDeque;
use std::time::Duration;

use ahash::AHashMap;
use tokio::time::Instant;

pub(super) struct Linger {
    after: Duration,
    /// Each lingering key and its deadline.
    due: AHashMap<String, Instant>,
    /// Deadlines in order; entries of keys wanted again (or let go again) are stale.
    queue: VecDeque<(Instant, String)>,
}

impl Linger {
    pub(super) fn new(after: Duration) -> Linger {
        Linger {
            after,
            due: AHashMap::new(),
            queue: VecDeque::new(),
        }
    }

    /// Whether keys linger at all (`unfollow_linger_ms` > 0).
    pub(super) fn is_on(&self) -> bool {
        !self.after.is_zero()
    }

    /// `key` is no longer wanted: it is let go at `now + linger`.
    pub(super) fn start(&mut self, key: String, now: Instant) {
        let at = now + self.after;
        self.due.insert(key.clone(), at);
        self.queue.push_back((at, key));
    }

    /// `key` is wanted again: it stays followed.
    pub(super) fn cancel(&mut self, key: &str) {
        self.due.remove(key);
    }

    /// How many keys linger now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.due.len()
    }

    /// When the next key may be let go (a stale entry's time, at worst: waking then
    /// lets nothing go).
    pub(super) fn next(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _)| *at)
    }

    /// The keys whose time is up at `now`.
    pub(super) fn expired(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.queue.front() {
            if *at > now {
                break;
            }
            let (at, key) = self.queue.pop_front().expect("a front");
            if self.due.get(&key) == Some(&at) {
                self.due.remove(&key);
                out.push(key);
            }
        }
        out
    }
}

/// Resolves at `at`, never without a deadline.
pub(super) async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_wanted_again_in_time_is_never_let_go() {
        let mut l = Linger::new(Duration::from_secs(2));
        let t0 = Instant::now();
        l.start("a".into(), t0);
        l.start("b".into(), t0 + Duration::from_millis(500));
        l.cancel("a");
        assert_eq!(l.len(), 1);
        assert_eq!(l.next(), Some(t0 + Duration::from_secs(2)));
        assert!(l.expired(t0 + Duration::from_millis(1999)).is_empty());
        // a's entry comes up first, stale: nothing is let go at its time.
        assert!(l.expired(t0 + Duration::from_secs(2)).is_empty());
        assert_eq!(
            l.expired(t0 + Duration::from_millis(2500)),
            vec!["b".to_owned()]
        );
        assert_eq!((l.len(), l.next()), (0, None));
        // Let go, wanted, let go again: the second deadline counts.
        l.start("c".into(), t0);
        l.cancel("c");
        l.start("c".into(), t0 + Duration::from_secs(1));
        assert!(l.expired(t0 + Duration::from_secs(2)).is_empty());
        assert_eq!(l.expired(t0 + Duration::from_secs(3)), vec!["c".to_owned()]);
        tokio::time::timeout(Duration::from_secs(1), until(None))
            .await
            .unwrap_err();
    }
}
