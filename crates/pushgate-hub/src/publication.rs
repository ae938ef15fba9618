//! What a publisher asks for, and what it is told.

use pushgate_protocol::{ChannelError, ConnId, Payload, UserError};
use thiserror::Error;

/// Most channels one publication may name (as many as one `subscribe` command).
pub const MAX_PUBLICATION_CHANNELS: usize = 100;
/// Most users one publication may name.
pub const MAX_PUBLICATION_USERS: usize = 1000;
/// Most connections one publication may name.
pub const MAX_PUBLICATION_CONNS: usize = 1000;

/// Who a publication is for. `C` names a connection: a [`ConnId`] of this node for the
/// hub; the cluster broker's targets (`pushgate_broker::Target`) name connections of any
/// node, and each node delivers `All`, `Channels` and `Users` to its own connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<C = ConnId> {
    /// Every connection.
    All,
    /// Subscribers of each channel (a connection following two of them gets two frames,
    /// each naming its channel).
    Channels(Vec<String>),
    /// Every connection of each user.
    Users(Vec<String>),
    /// These connections.
    Conns(Vec<C>),
}

impl<C> Target<C> {
    /// The `target` label of publication metrics: `all`, `channel`, `user` or `conn`.
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
}

impl<C: Eq + std::hash::Hash + Clone> Target<C> {
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
}

/// Refuses a publication naming more than the limit of targets of one `kind`
/// (`channel`, `user`, `conn`; see [`Target::kind`]). Duplicates count.
pub fn check_width(kind: &'static str, count: usize) -> Result<(), PublishError> {
    let max = match kind {
        "channel" => MAX_PUBLICATION_CHANNELS,
        "user" => MAX_PUBLICATION_USERS,
        "conn" => MAX_PUBLICATION_CONNS,
        _ => return Ok(()),
    };
    if count > max {
        return Err(PublishError::TooManyTargets { kind, count, max });
    }
    Ok(())
}

/// A name as an error message repeats it: at most 64 characters, so that a refused
/// megabyte-long name is not echoed back whole.
pub(crate) fn shown(name: &str) -> String {
    match name.char_indices().nth(64) {
        None => name.to_owned(),
        Some((end, _)) => format!("{}...", &name[..end]),
    }
}

/// One publication.
#[derive(Debug, Clone)]
pub struct Publication {
    pub target: Target,
    pub payload: Payload,
    /// A connection that must not receive it (typically the one whose action caused it).
    pub exclude: Option<ConnId>,
}

/// The outcome of a publication on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Connections it was enqueued to.
    pub enqueued: u64,
    /// Targeted connections that did not get it: closing, or slow (queue full).
    pub skipped: u64,
}

/// Why a publication was refused before anything was enqueued.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PublishError {
    #[error("no target: name all, channel(s), user(s) or connection(s)")]
    NoTarget,
    #[error("channel {name:?}: {error}")]
    BadChannel { name: String, error: ChannelError },
    #[error("payload of {0} bytes exceeds the limit of {1} bytes")]
    TooLarge(usize, usize),
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("{count} {kind} targets in one publication; at most {max}")]
    TooManyTargets {
        kind: &'static str,
        count: usize,
        max: usize,
    },
    #[error("user {name:?}: {error}")]
    BadUser { name: String, error: UserError },
}

impl PublishError {
    /// Counts this refusal in `pushgate_publications_refused_total{reason}` (one label
    /// lookup per refused publication, never per accepted one).
    pub fn count(&self) {
        metrics::counter!("pushgate_publications_refused_total", "reason" => self.label())
            .increment(1);
    }

    /// The `reason` label of `pushgate_publications_refused_total`.
    pub fn label(&self) -> &'static str {
        match self {
            PublishError::NoTarget => "no_target",
            PublishError::BadChannel { .. } => "bad_channel",
            PublishError::BadUser { .. } => "bad_user",
            PublishError::TooManyTargets { .. } => "too_many_targets",
            PublishError::TooLarge(..) => "too_large",
            PublishError::ShuttingDown => "shutting_down",
        }
    }
}
