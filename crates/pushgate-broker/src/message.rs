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
