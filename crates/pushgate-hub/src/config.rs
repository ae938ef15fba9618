//! The hub's settings (a part of the gateway's config).

use std::time::Duration;

/// What happens when a connection's outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowPolicy {
    /// Close the connection with 4008 (slow consumer). It can reconnect and catch up
    /// elsewhere; it never holds memory or delays anyone else.
    #[default]
    Disconnect,
    /// Drop the new message for this connection only and count it.
    DropNewest,
}

/// The hub's settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Number of shards (each driven by one worker thread).
    pub shards: usize,
    /// This node's id, the prefix of every connection id.
    pub node_id: String,
    /// Most frames an outbound queue holds before the slow policy applies.
    pub queue_max_frames: usize,
    /// Most bytes an outbound queue holds before the slow policy applies.
    pub queue_max_bytes: usize,
    /// What to do with a client whose queue is full.
    pub slow_policy: SlowPolicy,
    /// How often each shard pings its connections.
    pub heartbeat_interval: Duration,
    /// A connection that sent nothing (no pong, no data) for this long is reaped.
    pub heartbeat_timeout: Duration,
    /// Most channels one connection may follow.
    pub max_subscriptions_per_conn: usize,
    /// Largest publication payload accepted, in bytes.
    pub max_payload: usize,
    /// How long a connection whose token expired may stay open waiting for a `refresh`.
    pub token_refresh_grace: Duration,
    /// Most `refresh` commands one token connection may begin per minute; 0: no limit.
    pub max_refreshes_per_minute: u8,
    /// Track which channels and users have local connections ([`crate::Interest`]),
    /// for a cluster broker. Off on a single node.
    pub track_interest: bool,
    /// Channels that keep history (`[[history]]` rules); empty: none does.
    pub history: Vec<crate::HistoryRule>,
    /// Most bytes the history of all channels may hold on this node.
    pub history_max_bytes: usize,
    /// Channels that keep presence (`[[presence]]` rules); empty: none does.
    pub presence: Vec<crate::PresenceRule>,
    /// History positions are assigned by the cluster broker (Redis), not by this
    /// node: streams start unsynced and learn their publications through
    /// [`crate::Hub::submit_at`] and [`crate::Hub::sync`].
    pub positions_from_broker: bool,
    /// How publications are compressed for connections that negotiated
    /// permessage-deflate (the edge decides who does, `compression`).
    pub compression: crate::CompressionConfig,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            node_id: "n1".into(),
            queue_max_frames: 1024,
            queue_max_bytes: 1 << 20,
            slow_policy: SlowPolicy::Disconnect,
            heartbeat_interval: Duration::from_secs(25),
            heartbeat_timeout: Duration::from_secs(60),
            max_subscriptions_per_conn: 128,
            max_payload: 64 * 1024,
            token_refresh_grace: Duration::from_secs(30),
            max_refreshes_per_minute: 5,
            track_interest: false,
            history: Vec::new(),
            history_max_bytes: 256 << 20,
            presence: Vec::new(),
            positions_from_broker: false,
            compression: crate::CompressionConfig::default(),
        }
    }
}
