//! What this node follows: the channels and users with at least one local connection.
//!
//! A cluster broker subscribes to a channel or user on the shared bus only while some
//! connection on this node needs it, so a publication nobody here follows costs this
//! node nothing. Shards report when a key enters or leaves their index (the first
//! subscriber, the last one); the registry counts shards per key and marks the key
//! dirty when the node-wide count goes 0 → 1 or 1 → 0. The broker takes the dirty
//! keys and reconciles its bus subscriptions with what is wanted now, so a quick
//! unsubscribe-resubscribe never leaves it in the wrong state.
//!
//! It also holds a client's `subscribed` reply until the bus subscription of every
//! channel it names is confirmed ([`Interest::hold`]), so that a client told it is
//! subscribed receives what any node publishes from then on.
//!
//! Disabled (the single-node default), it costs one branch per index change.
//!
//! A [`ChannelObserver`] ([`Interest::observe_channels`]) is told of the same node-wide
//! transitions of channels (first local subscriber, last one), with or without a
//! cluster broker: the Pusher surface sends its `channel_occupied` and
//! `channel_vacated` webhooks from it. It is called under the registry's lock, so
//! the calls for one channel come in the order of the transitions; it must not block
//! (a `try_send` on a queue is what it is for).

use ahash::{AHashMap, AHashSet};
use bytes::Bytes;
use std::sync::OnceLock;

use parking_lot::Mutex;
use pushgate_protocol::ConnId;
use slab::Slab;
use tokio::sync::Notify;

/// What a node can follow on a bus.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Channel(Box<str>),
    User(Box<str>),
}

/// Told `(channel, true)` when a channel gets its first subscriber on this node,
/// `(channel, false)` when it loses its last one.
pub type ChannelObserver = Box<dyn Fn(&str, bool) + Send + Sync>;

/// The node-wide interest registry, shared by the shards.
#[derive(Default)]
pub struct Interest {
    enabled: bool,
    observer: OnceLock<ChannelObserver>,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    /// Shards that have each key in their index.
    shards: AHashMap<Key, u32>,
    /// Keys whose wanted state changed since the broker last looked.
    dirty: AHashSet<Key>,
    /// Keys the bus confirmed this node follows.
    confirmed: AHashSet<Key>,
    /// Replies held until their keys are confirmed, and the waiters of each key.
    waiters: Slab<Waiter>,
    by_key: AHashMap<Key, Vec<usize>>,
}

/// A reply waiting for `remaining` keys to be confirmed.
struct Waiter {
    remaining: usize,
    conn: ConnId,
    frame: Bytes,
}

/// A held reply that may be sent now.
pub type Released = (ConnId, Bytes);

impl Interest {
    /// A registry that tracks (for a cluster broker) or ignores (single node) changes.
    pub fn new(enabled: bool) -> Interest {
        Interest {
            enabled,
            ..Interest::default()
        }
    }

    /// Sets the node's channel observer; only the first call takes effect (the
    /// others give theirs back). Set it before the first connection: a channel
    /// occupied before is never reported.
    pub fn observe_channels(&self, observer: ChannelObserver) -> Result<(), ChannelObserver> {
        self.observer.set(observer)
    }

    /// The key to count, if anything follows its changes.
    fn tracked(&self, key: impl FnOnce() -> Key) -> Option<Key> {
        if self.enabled {
            return Some(key());
        }
        self.observer.get()?;
        Some(key()).filter(|k| matches!(k, Key::Channel(_)))
    }

    /// A node-wide transition of `key` (now wanted or not), under the lock.
    fn transition(&self, st: &mut State, key: Key, wanted: bool) {
        if let (Some(observe), Key::Channel(c)) = (self.observer.get(), &key) {
            observe(c, wanted);
        }
        if self.enabled {
            st.dirty.insert(key);
        }
    }

    /// A shard's index gained `key`.
    pub(crate) fn add(&self, key: impl FnOnce() -> Key) {
        let Some(key) = self.tracked(key) else {
            return;
        };
        let mut st = self.state.lock();
        let n = st.shards.entry(key.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.transition(&mut st, key, true);
            drop(st);
            self.changed.notify_one();
        }
    }

    /// A shard's index lost `key`.
    pub(crate) fn remove(&self, key: impl FnOnce() -> Key) {
        let Some(key) = self.tracked(key) else {
            return;
        };
        let mut st = self.state.lock();
        let Some(n) = st.shards.get_mut(&key) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            st.shards.remove(&key);
            self.transition(&mut st, key, false);
            drop(st);
            self.changed.notify_one();
        }
    }

    /// The keys whose wanted state changed, each with whether it is wanted now.
    pub fn take_changes(&self) -> Vec<(Key, bool)> {
        let mut st = self.state.lock();
        let dirty = std::mem::take(&mut st.dirty);
        dirty
            .into_iter()
            .map(|k| {
                let wanted = st.shards.contains_key(&k);
                (k, wanted)
            })
            .collect()
    }

    /// Every key wanted now (after a reconnect); clears the pending changes.
    pub fn snapshot(&self) -> Vec<Key> {
        let mut st = self.state.lock();
        st.dirty.clear();
        st.shards.keys().cloned().collect()
    }

    /// Whether `key` is wanted now.
    pub fn wants(&self, key: &Key) -> bool {
        self.state.lock().shards.contains_key(key)
    }

    /// Holds `frame` (a reply to `conn`) until every key is confirmed on the bus, or
    /// gives it back at once if they all are (or tracking is off).
    pub fn hold(
        &self,
        keys: impl IntoIterator<Item = Key>,
        conn: ConnId,
        frame: Bytes,
    ) -> Option<Bytes> {
        if !self.enabled {
            return Some(frame);
        }
        let mut st = self.state.lock();
        let missing: Vec<Key> = keys
            .into_iter()
            .filter(|k| !st.confirmed.contains(k))
            .collect();
        if missing.is_empty() {
            return Some(frame);
        }
        let id = st.waiters.insert(Waiter {
            remaining: missing.len(),
            conn,
            frame,
        });
        for k in missing {
            st.by_key.entry(k).or_default().push(id);
        }
        None
    }

    /// The bus confirmed `key`: returns the replies that no longer wait.
    pub fn confirm(&self, key: Key) -> Vec<Released> {
        let mut st = self.state.lock();
        let out = st.release(&key);
        st.confirmed.insert(key);
        out
    }

    /// The broker is about to stop following `key`, which was unwanted: if it still
    /// is, it is no longer confirmed and its waiters are released (whoever waited has
    /// left the channel already); if it is wanted again, nothing changes (`None`) and
    /// the broker keeps following it. Checked and done under one lock, so that a
    /// subscribe either finds the key confirmed and the broker keeps following it, or
    /// finds it unconfirmed and waits for the next confirmation: never told
    /// `subscribed` on a key the broker is dropping.
    pub fn unconfirm(&self, key: &Key) -> Option<Vec<Released>> {
        let mut st = self.state.lock();
        if st.shards.contains_key(key) {
            return None;
        }
        st.confirmed.remove(key);
        Some(st.release(key))
    }

    /// The bus connection was lost: nothing is confirmed any more. Waiters of keys no
    /// longer wanted are released (the next connection will not subscribe to them).
    pub fn reset(&self) -> Vec<Released> {
        let mut st = self.state.lock();
        st.confirmed.clear();
        let unwanted: Vec<Key> = st
            .by_key
            .keys()
            .filter(|k| !st.shards.contains_key(*k))
            .cloned()
            .collect();
        unwanted.iter().flat_map(|k| st.release(k)).collect()
    }

    /// Resolves when a change was recorded since the last call (or is pending).
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

impl State {
    fn release(&mut self, key: &Key) -> Vec<Released> {
        let mut out = Vec::new();
        for id in self.by_key.remove(key).unwrap_or_default() {
            let w = &mut self.waiters[id];
            w.remaining -= 1;
            if w.remaining == 0 {
                let w = self.waiters.remove(id);
                out.push((w.conn, w.frame));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> Key {
        Key::Channel(s.into())
    }

    #[test]
    fn only_node_wide_transitions_are_changes() {
        let i = Interest::new(true);
        i.add(|| ch("a"));
        i.add(|| ch("a")); // a second shard
        assert_eq!(i.take_changes(), vec![(ch("a"), true)]);
        i.remove(|| ch("a"));
        assert!(i.take_changes().is_empty(), "one shard still has it");
        i.remove(|| ch("a"));
        assert_eq!(i.take_changes(), vec![(ch("a"), false)]);
    }

    #[test]
    fn a_quick_leave_and_return_reads_as_wanted() {
        let i = Interest::new(true);
        i.add(|| ch("a"));
        i.remove(|| ch("a"));
        i.add(|| ch("a"));
        assert_eq!(i.take_changes(), vec![(ch("a"), true)]);
        assert_eq!(i.snapshot(), vec![ch("a")]);
    }

    #[test]
    fn a_reply_waits_for_every_key_it_names() {
        let i = Interest::new(true);
        let f = Bytes::from_static(b"subscribed");
        i.add(|| ch("a"));
        i.add(|| ch("b"));
        assert!(i.hold([ch("a"), ch("b")], ConnId(1), f.clone()).is_none());
        assert!(i.confirm(ch("a")).is_empty(), "b is not confirmed yet");
        assert_eq!(i.confirm(ch("b")), vec![(ConnId(1), f.clone())]);
        assert_eq!(
            i.hold([ch("a")], ConnId(2), f.clone()),
            Some(f.clone()),
            "confirmed: at once"
        );
        // A key that stops being wanted releases its waiters; so does a reset for keys
        // no longer wanted.
        i.add(|| ch("c"));
        assert!(i.hold([ch("c")], ConnId(3), f.clone()).is_none());
        i.remove(|| ch("c"));
        assert_eq!(i.unconfirm(&ch("c")).map(|r| r.len()), Some(1));
        i.add(|| ch("d"));
        assert!(i.hold([ch("d")], ConnId(4), f.clone()).is_none());
        assert!(
            i.reset().is_empty(),
            "d is still wanted: it will be confirmed again"
        );
        i.remove(|| ch("d"));
        assert_eq!(i.reset(), vec![(ConnId(4), f.clone())]);
        assert!(
            i.hold([ch("a")], ConnId(5), f.clone()).is_none(),
            "nothing confirmed after a reset"
        );
    }

    #[test]
    fn a_key_wanted_again_is_not_unconfirmed() {
        let i = Interest::new(true);
        let f = Bytes::from_static(b"subscribed");
        i.add(|| ch("a"));
        i.confirm(ch("a"));
        i.remove(|| ch("a"));
        // A subscribe comes back before the broker drops the key: it stays confirmed
        // (the broker keeps following it), and the reply goes at once.
        i.add(|| ch("a"));
        assert_eq!(i.unconfirm(&ch("a")), None);
        assert_eq!(i.hold([ch("a")], ConnId(1), f.clone()), Some(f));
    }

    #[test]
    fn the_observer_sees_node_wide_channel_transitions_in_order() {
        use std::sync::Arc;
        for enabled in [false, true] {
            let i = Interest::new(enabled);
            let seen = Arc::new(Mutex::new(Vec::new()));
            let s = seen.clone();
            assert!(i
                .observe_channels(Box::new(move |c, on| s.lock().push((c.to_owned(), on))))
                .is_ok());
            assert!(i.observe_channels(Box::new(|_, _| {})).is_err(), "set once");
            i.add(|| ch("a"));
            i.add(|| ch("a")); // a second shard: no transition
            i.add(|| Key::User("u".into())); // users are not channels
            i.remove(|| ch("a"));
            i.remove(|| ch("a"));
            i.remove(|| ch("never added"));
            assert_eq!(
                *seen.lock(),
                [("a".to_owned(), true), ("a".to_owned(), false)],
                "enabled: {enabled}"
            );
            assert_eq!(
                i.take_changes().len(),
                if enabled { 2 } else { 0 },
                "the broker's changes (a and u) only when tracking"
            );
        }
    }

    #[test]
    fn disabled_records_nothing() {
        let i = Interest::new(false);
        let f = Bytes::from_static(b"x");
        assert_eq!(i.hold([ch("a")], ConnId(1), f.clone()), Some(f));
        i.add(|| ch("a"));
        assert!(i.take_changes().is_empty());
        assert!(i.snapshot().is_empty());
    }
}
