//! Operators' calls, cluster-wide: who a call is about and what it did.

use pushgate_hub::AdminReport;

use crate::wire::NodeConn;

/// Who an operator's call is about, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// One connection, on whichever node it is.
    Conn(NodeConn),
    /// Every connection of a user, on every node.
    User(String),
}

/// The outcome of an operator's call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlReport {
    /// What it did to this node's connections.
    pub local: AdminReport,
    /// Nodes that took it (this one included when it has the user or connection).
    pub nodes: u32,
}

/// Per-node counts reported for cluster-wide stats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub node: String,
    pub connections: u64,
    pub channels: u64,
    pub subscriptions: u64,
}
