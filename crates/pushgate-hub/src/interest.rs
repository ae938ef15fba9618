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
//! Disabled (the single-node default), it costs one branch per index change.

use ahash::{AHashMap, AHashSet};
use parking_lot::Mutex;
use tokio::sync::Notify;

/// What a node can follow on a bus.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Channel(Box<str>),
    User(Box<str>),
}

/// The node-wide interest registry, shared by the shards.
#[derive(Default)]
pub struct Interest {
    enabled: bool,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    /// Shards that have each key in their index.
    shards: AHashMap<Key, u32>,
    /// Keys whose wanted state changed since the broker last looked.
    dirty: AHashSet<Key>,
}

impl Interest {
    /// A registry that tracks (for a cluster broker) or ignores (single node) changes.
    pub fn new(enabled: bool) -> Interest {
        Interest {
            enabled,
            ..Interest::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A shard's index gained `key`.
    pub(crate) fn add(&self, key: impl FnOnce() -> Key) {
        if !self.enabled {
            return;
        }
        let key = key();
        let mut st = self.state.lock();
        let n = st.shards.entry(key.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            st.dirty.insert(key);
            drop(st);
            self.changed.notify_one();
        }
    }

    /// A shard's index lost `key`.
    pub(crate) fn remove(&self, key: impl FnOnce() -> Key) {
        if !self.enabled {
            return;
        }
        let key = key();
        let mut st = self.state.lock();
        let Some(n) = st.shards.get_mut(&key) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            st.shards.remove(&key);
            st.dirty.insert(key);
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

    /// Resolves when a change was recorded since the last call (or is pending).
    pub async fn changed(&self) {
        self.changed.notified().await
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
    fn disabled_records_nothing() {
        let i = Interest::new(false);
        i.add(|| ch("a"));
        assert!(i.take_changes().is_empty());
        assert!(i.snapshot().is_empty());
    }
}
