//! The events task: takes the changes recorded under the shards' locks, in order,
//! hands each to the cluster broker (if any) and sends `join` / `leave` to this
//! node's watchers of the channel. Sending takes the watchers' shards' locks, which
//! is why it happens here and not where the change was recorded.
//!
//! The dialect's member events (a user's first join, last leave) are judged here only
//! without a cluster: with one, the cluster judges them for every node and this node
//! sends them when the cluster announces them ([`announce`](super::announce)).

use std::sync::Arc;

use pushgate_protocol::presence::encode_event;
use pushgate_protocol::{ConnId, PresenceClient, PresenceEvent};

use super::Presence;
use crate::hub::Hub;

/// Changes taken per wake-up.
const BATCH: usize = 256;

impl Presence {
    /// Runs until the hub is dropped. Spawn it once per node (a second call returns
    /// at once).
    pub async fn run(self: Arc<Self>, hub: Hub) {
        let Some(mut rx) = self.rx.lock().take() else {
            return;
        };
        let node = hub.config().node_id.clone();
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let cluster = self.cluster.get();
            let dialect = hub.dialect();
            for c in batch.drain(..) {
                // Without a cluster this node's view is the whole view.
                let user_edge = match cluster {
                    Some(cluster) => {
                        cluster.changed(&c);
                        None
                    }
                    None => Some(c.user_edge),
                };
                if let (Some(d), Some(u), Some(true)) = (dialect, &c.member.user, user_edge) {
                    d.user_edge(&c.channel, u, c.joined);
                }
                let kind = if c.joined {
                    PresenceEvent::Join
                } else {
                    PresenceEvent::Leave
                };
                let client = c.client(&node);
                self.send_event_as(
                    &hub,
                    kind,
                    &c.channel,
                    &client,
                    Some(c.conn),
                    true,
                    user_edge,
                );
            }
        }
    }

    /// Sends an event to this node's watchers of `channel`, except `skip` (the
    /// connection the event is about): with `per_conn`, the pushgate.v1 event to its
    /// pushgate.v1 watchers; when `user_edge` is `Some(true)` (the user's first join
    /// or last leave), the dialect's event to its watchers. Each frame is encoded once.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_event_as(
        &self,
        hub: &Hub,
        kind: PresenceEvent,
        channel: &str,
        client: &PresenceClient,
        skip: Option<ConnId>,
        per_conn: bool,
        user_edge: Option<bool>,
    ) {
        let alt_wanted = user_edge == Some(true) && hub.dialect().is_some();
        if !per_conn && !alt_wanted {
            return;
        }
        let mut watchers = self.watchers(channel);
        watchers.retain(|w| Some(*w) != skip);
        if watchers.is_empty() {
            return;
        }
        let frame = per_conn.then(|| encode_event(kind, channel, client));
        let alt = hub
            .dialect()
            .filter(|_| alt_wanted)
            .and_then(|d| d.presence_event(kind, channel, client, true));
        self.metrics.events.increment(watchers.len() as u64);
        hub.send_to_each_alt(&watchers, frame.as_ref(), alt.as_ref());
    }
}
