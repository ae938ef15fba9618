//! Changes announced by the cluster: another node's join or leave, or one of this
//! node's own, heard back from the cluster's bus with the cluster's judgement of its
//! user's edge.
//!
//! With a cluster broker, whether a change is its user's first join or last leave of
//! the channel is judged once, where every node's members are (the broker's scripts,
//! atomically), and carried on the change's note: every node, the changing one too,
//! sends the dialect's member event to its own watchers from that note, in the order
//! the notes were written, so a user's leave is never announced before its join. The
//! dialect's hook ([`Dialect::user_edge`](crate::Dialect::user_edge), the webhooks) is
//! called once for the cluster, by the node whose change made the edge
//! ([`Presence::cluster_edge`]).

use pushgate_protocol::{ConnId, PresenceClient, PresenceEvent};

use super::Presence;
use crate::hub::Hub;

/// A change heard on the cluster's bus.
#[derive(Debug, Clone, Copy)]
pub struct Announced<'a> {
    pub kind: PresenceEvent,
    pub channel: &'a str,
    pub client: &'a PresenceClient,
    /// The change is this node's own connection's: its pushgate.v1 event was sent when
    /// it happened, and the connection is not told of it.
    pub own: Option<ConnId>,
    /// Whether it is its user's first join or last leave in the whole cluster, as the
    /// cluster judged it; `None`: a note that carries no judgement (a node of an older
    /// version), judged from this node's members as before.
    pub user_edge: Option<bool>,
    /// Not a join or leave that happened but a member the cluster swept (a dead node's
    /// removed, one put back after the cluster lost it): no pushgate.v1 event (those
    /// are per connection and only sent for joins and leaves that happened).
    pub swept: bool,
}

impl Presence {
    /// Sends an announced change to this node's watchers of its channel.
    pub fn announce(&self, hub: &Hub, a: &Announced<'_>) {
        let user_edge = a.user_edge.unwrap_or_else(|| match &a.client.user {
            Some(u) => !self.has_user(a.channel, u),
            None => false,
        });
        let per_conn = a.own.is_none() && !a.swept;
        self.send_event_as(
            hub,
            a.kind,
            a.channel,
            a.client,
            a.own,
            per_conn,
            Some(user_edge),
        );
    }

    /// The cluster judged one of this node's changes (or a cleanup this node ran) to be
    /// `user`'s first join (`joined`) or last leave of `channel` cluster-wide: the
    /// dialect's hook is told, once for the cluster.
    pub fn cluster_edge(&self, hub: &Hub, channel: &str, user: &str, joined: bool) {
        if let Some(d) = hub.dialect() {
            d.user_edge(channel, user, joined);
        }
    }
}
