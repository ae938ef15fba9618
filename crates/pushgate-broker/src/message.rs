//! What a publisher hands the broker: a [`Message`] for a cluster-wide [`Target`].

use pushgate_protocol::Payload;

use crate::wire::NodeConn;

/// Who a publication is for, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every connection on every node.
    All,
    /// Subscribers of each channel, on every node.
    Channels(Vec<String>),
    /// Every connection of each user, on every node.
    Users(Vec<String>),
    /// These connections, wherever they are (each id names its node).
    Conns(Vec<NodeConn>),
}

impl Target {
    /// The hub's name for this kind of target: `all`, `channel`, `user` or `conn`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::All => "all",
            Target::Channels(_) => "channel",
            Target::Users(_) => "user",
            Target::Conns(_) => "conn",
        }
    }

    /// How many names it lists (0 for `All`).
    pub fn len(&self) -> usize {
        match self {
            Target::All => 0,
            Target::Channels(v) | Target::Users(v) => v.len(),
            Target::Conns(v) => v.len(),
        }
    }

    /// Whether it lists no name (always true for `All`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops repeated names, keeping the first of each in order: one pass with a set,
    /// so that nothing downstream compares names pairwise.
    pub fn dedup(&mut self) {
        fn first_of_each<T: Eq + std::hash::Hash + Clone>(v: &mut Vec<T>) {
            if v.len() < 2 {
                return;
            }
            let mut seen = ahash::AHashSet::with_capacity(v.len());
            v.retain(|x| seen.insert(x.clone()));
        }
        match self {
            Target::All => {}
            Target::Channels(v) | Target::Users(v) => first_of_each(v),
            Target::Conns(v) => first_of_each(v),
        }
    }

    /// The hub target with the same shape, for validation (connection ids of any node).
    pub(crate) fn hub_shape(&self) -> pushgate_hub::Target {
        match self {
            Target::All => pushgate_hub::Target::All,
            Target::Channels(c) => pushgate_hub::Target::Channels(c.clone()),
            Target::Users(u) => pushgate_hub::Target::Users(u.clone()),
            Target::Conns(c) => pushgate_hub::Target::Conns(c.iter().map(|c| c.id).collect()),
        }
    }
}

/// One publication, as a publisher states it.
#[derive(Debug, Clone)]
pub struct Message {
    pub target: Target,
    pub payload: Payload,
    /// A connection that must not receive it.
    pub exclude: Option<NodeConn>,
    /// An idempotency key: a publication with a key seen within the window is not
    /// published again; the retry is answered with the first attempt's outcome.
    pub idempotency_key: Option<String>,
}
