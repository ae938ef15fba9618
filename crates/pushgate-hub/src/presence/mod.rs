//! Presence: who is subscribed to the channels under a `[[presence]]` rule.
//!
//! - [`rules`]: which channels keep presence (exact names and `prefix*` patterns,
//!   matched like history rules).
//! - [`store`]: the node's [`Presence`]: per channel, its local members (connection,
//!   user, the token's `info`) and the local connections that asked for `join` /
//!   `leave` events; every change is queued for [`events`].
//! - [`events`]: the task that takes the queued changes, hands them to the cluster
//!   (when one is installed: [`PresenceCluster`]) and sends events to local watchers.
//! - [`announce`]: changes the cluster announces (other nodes', and with the cluster's
//!   judgement of a user's first join / last leave, this node's own).
//!
//! Cost model: a channel without a rule costs one rule scan when a connection joins or
//! leaves it (a handful of rules, never per publication) and nothing else; a node
//! without rules has no `Presence` at all. A member costs one map entry in its
//! channel's room. Joins and leaves are recorded under the shard's lock (the room's own
//! lock is a leaf: nothing is locked while holding it), events are sent later, by the
//! task, so that no shard's lock is ever held while another shard's is taken.
//!
//! docs/presence.md describes the model and what is not guaranteed.

mod announce;
mod events;
mod rules;
mod store;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use pushgate_protocol::{ConnId, PresenceClient};
use thiserror::Error;

pub use announce::Announced;
pub use rules::{PresenceRule, PresenceRuleError};
pub use store::Presence;

/// A connection's part in a room: who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user: Option<Arc<str>>,
    /// The token's `info` claim, as JSON text.
    pub info: Option<Arc<str>>,
}

/// A local connection joined or left a presence channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub channel: Arc<str>,
    pub conn: ConnId,
    pub member: Member,
    pub joined: bool,
    /// The member's user had no other connection in the channel on this node before
    /// this join, or has none left after this leave (always false without a user).
    /// Node-level: with a cluster installed, the cluster judges the edge instead.
    pub user_edge: bool,
}

impl Change {
    /// The member as the wire names it, with this node's id in its connection id.
    pub fn client(&self, node: &str) -> PresenceClient {
        PresenceClient {
            conn: self.conn.display(node).to_string(),
            user: self.member.user.as_deref().map(Into::into),
            info: self.member.info.as_deref().map(Into::into),
        }
    }
}

/// Why a presence read failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PresenceError {
    #[error("channel {0:?} keeps no presence (no [[presence]] rule matches it)")]
    NoRule(String),
    #[error("presence is unavailable: the cluster broker is down")]
    Unavailable,
    #[error("presence is unavailable: the cluster broker did not answer in time")]
    Timeout,
}

/// A boxed future, for the object-safe [`PresenceCluster`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Presence across nodes, installed by a cluster broker (Redis): it is told every
/// local change and answers reads with every node's members.
///
/// Installing one makes it the judge of users' first joins and last leaves: the
/// events task then sends only pushgate.v1 events for local changes, and the cluster
/// announces every change with its cluster-wide edge ([`Presence::announce`], on every
/// node, the changing one too) and reports each edge once ([`Presence::cluster_edge`]).
pub trait PresenceCluster: Send + Sync + 'static {
    /// A local join or leave, in the order they happened for each connection. Must not
    /// block (it is called by the events task).
    fn changed(&self, change: &Change);
    /// Every member of `channel` on every live node.
    fn read(&self, channel: String) -> BoxFuture<Result<Vec<PresenceClient>, PresenceError>>;
}

#[cfg(test)]
mod tests;
