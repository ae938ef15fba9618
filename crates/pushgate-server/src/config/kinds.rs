//! The settings that take one of a few names, held as enums: a name that is not one of
//! them is refused when the configuration is read, and the message lists the names
//! (`unknown variant "ignore", expected "disconnect" or "drop_newest"`).

use pushgate_hub::SlowPolicy;
use serde::{Deserialize, Serialize};

/// `auth_mode`: who may connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Every client admitted, unauthenticated (development, or behind an
    /// authenticating proxy); logged as a warning at start.
    #[default]
    Anonymous,
    /// A valid connection token (JWT) is required.
    Jwt,
}

/// `broker`: how publications reach the other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerKind {
    /// A single node, no external service.
    #[default]
    Memory,
    /// Nodes joined through Redis 7 pub/sub (docs/cluster.md).
    Redis,
}

/// `redis_mode`: which Redis deployment `redis_url` names (docs/cluster.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisMode {
    /// One primary.
    #[default]
    Standalone,
    /// A Redis Cluster, found from seed nodes.
    Cluster,
    /// A primary found through Sentinel.
    Sentinel,
}

/// `log_format`: how log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// For people (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `compression`: whether permessage-deflate (RFC 7692) is negotiated with clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Declined: every client gets uncompressed frames (the behaviour before it existed).
    #[default]
    Off,
    /// Accepted from clients that offer it (docs/protocol.md, "Compression").
    On,
}

/// `slow_policy`: the hub's [`SlowPolicy`] under its configuration names
/// (serde's remote derive: the hub does not depend on serde).
#[derive(Serialize, Deserialize)]
#[serde(remote = "SlowPolicy", rename_all = "snake_case")]
pub(crate) enum SlowPolicyName {
    Disconnect,
    DropNewest,
}
