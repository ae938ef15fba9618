//! What a publisher asks for, and what it is told.

use pushgate_protocol::{ChannelError, ConnId, Payload};
use thiserror::Error;

/// Who a publication is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every connection on the node.
    All,
    /// Subscribers of each channel (a connection following two of them gets two frames,
    /// each naming its channel).
    Channels(Vec<String>),
    /// Every connection of each user.
    Users(Vec<String>),
    /// These connections.
    Conns(Vec<ConnId>),
}

impl Target {
    /// The `target` label of publication metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::All => "all",
            Target::Channels(_) => "channel",
            Target::Users(_) => "user",
            Target::Conns(_) => "conn",
        }
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
}
