//! The events task: takes the changes recorded under the shards' locks, in order,
//! hands each to the cluster broker (if any) and sends `join` / `leave` to this
//! node's watchers of the channel. Sending takes the watchers' shards' locks, which
//! is why it happens here and not where the change was recorded.

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
                if let Some(cluster) = cluster {
                    cluster.changed(&c);
                }
                if let Some(d) = dialect {
                    d.presence_changed(&c, c.user_edge);
                }
                let kind = if c.joined {
                    PresenceEvent::Join
                } else {
                    PresenceEvent::Leave
                };
                let client = c.client(&node);
                self.send_event_as(&hub, kind, &c.channel, &client, Some(c.conn), c.user_edge);
            }
        }
    }

    /// Sends an event to this node's watchers of `channel`, except `skip` (the
    /// connection the event is about). The frame is encoded once (and once in the
    /// dialect's form, for its watchers). For an event of another node: whether it is
    /// its user's first join or last leave is judged from this node's members.
    pub fn send_event(
        &self,
        hub: &Hub,
        kind: PresenceEvent,
        channel: &str,
        client: &PresenceClient,
        skip: Option<ConnId>,
    ) {
        let edge = match &client.user {
            Some(u) => !self.has_user(channel, u),
            None => false,
        };
        self.send_event_as(hub, kind, channel, client, skip, edge);
    }

    fn send_event_as(
        &self,
        hub: &Hub,
        kind: PresenceEvent,
        channel: &str,
        client: &PresenceClient,
        skip: Option<ConnId>,
        user_edge: bool,
    ) {
        let mut watchers = self.watchers(channel);
        watchers.retain(|w| Some(*w) != skip);
        if watchers.is_empty() {
            return;
        }
        let frame = encode_event(kind, channel, client);
        let alt = hub
            .dialect()
            .and_then(|d| d.presence_event(kind, channel, client, user_edge));
        self.metrics.events.increment(watchers.len() as u64);
        hub.send_to_each_alt(&watchers, &frame, alt.as_ref());
    }
}
