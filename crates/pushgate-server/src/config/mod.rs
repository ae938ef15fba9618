//! The gateway's configuration: one struct, documented defaults, loaded from TOML,
//! overridden by `PUSHGATE_<FIELD>` environment variables and command-line flags,
//! validated before anything starts. Every field is listed in `docs/configuration.md`.
//!
//! The struct stays flat (each field is one TOML key, one variable, one flag); what is
//! done with the fields is split by concern:
//! - this file: the struct, its defaults, and what the hub, the edge and the broker get;
//! - `error`: [`ConfigError`] and how serde's messages are shown to an operator;
//! - `load`: TOML, `PUSHGATE_<FIELD>` variables and `set` (flags);
//! - `validate`: [`Config::validate`], the order of its checks, and the general ones;
//! - `compression`: permessage-deflate's settings;
//! - `history`: the `[[history]]` rules;
//! - `redis`: the Redis deployment (`redis_url`, `redis_mode`, sentinel, TLS);
//! - `presence`: the `[[presence]]` rules and `presence_ttl_ms`;
//! - `pusher`: the `[[pusher_apps]]` (the Pusher surface);
//! - `internal`: the internal ports (HTTP and gRPC): tokens, limits, deadlines;
//! - `jwt`: connection tokens;
//! - `print`: the effective configuration as TOML, secrets redacted;
//! - `kinds`: the settings held as enums.

mod compression;
mod error;
mod history;
mod internal;
mod jwt;
mod kinds;
mod load;
mod presence;
mod print;
mod pusher;
mod redis;
#[cfg(test)]
mod tests;
mod validate;

use std::net::SocketAddr;
use std::time::Duration;

use pushgate_edge::EdgeConfig;
use pushgate_hub::{HubConfig, SlowPolicy};
use pushgate_pusher::PusherApp;
use serde::{Deserialize, Serialize};

pub use error::ConfigError;
pub use history::HistoryConfig;
pub use kinds::{AuthMode, BrokerKind, Compression, LogFormat, RedisMode};
pub use presence::PresenceConfig;

/// The whole configuration of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's id: the prefix of connection ids (letters, digits, `_`, `.`, `-`).
    pub node_id: String,
    /// Where WebSocket clients connect.
    pub ws_addr: SocketAddr,
    /// The path that upgrades to WebSocket.
    pub ws_path: String,
    /// The path of Server-Sent Events streams on the WebSocket listener; empty: none.
    pub sse_path: String,
    /// The internal HTTP API (publish, metrics, health). Keep it off the internet.
    pub http_addr: SocketAddr,
    /// The internal gRPC API (`pushgate.v1`, health, reflection). Keep it off the internet.
    pub grpc_addr: SocketAddr,
    /// Bearer token every `pushgate.v1` gRPC call must carry. Empty: no authentication.
    pub grpc_token: String,
    /// Number of shards; 0 means one per CPU core.
    pub shards: usize,
    /// Pin each shard's thread to a core. Off by default: it pays only on a host where
    /// nothing else competes for the cores; measured on a 2-core host shared with other
    /// processes it raised p50 latency by half with no throughput gain (docs/benchmarks.md).
    pub pin_shards: bool,
    /// Most frames waiting for one client before the slow-consumer policy applies.
    pub queue_max_frames: usize,
    /// Most bytes waiting for one client before the slow-consumer policy applies.
    pub queue_max_bytes: usize,
    /// `disconnect` (close with 4008) or `drop_newest` (skip the message for that client).
    #[serde(with = "kinds::SlowPolicyName")]
    pub slow_policy: SlowPolicy,
    /// How often each shard pings its connections, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// A connection silent (no data, no pong) for this long is closed with 4001, in milliseconds.
    pub heartbeat_timeout_ms: u64,
    /// Largest client frame or message, in bytes (close 1009 beyond).
    pub max_message_bytes: usize,
    /// Largest publication payload, in bytes (HTTP 413 beyond).
    pub max_payload_bytes: usize,
    /// Most channels one connection may follow.
    pub max_subscriptions_per_conn: usize,
    /// Time a client has to complete the upgrade request, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Time to flush and exchange close frames when a connection ends, in milliseconds.
    pub close_timeout_ms: u64,
    /// `off` (default) or `on`: negotiate permessage-deflate with clients that offer it.
    /// Each publication is then compressed once, for all of them (docs/protocol.md).
    pub compression: Compression,
    /// zlib level of compressed publications: 1 (fastest, default) to 9 (smallest).
    pub compression_level: u32,
    /// Publications with a smaller payload, in bytes, go uncompressed to everyone.
    pub compression_min_bytes: usize,
    /// Header carrying the user id, set by a trusted proxy in front of pushgate. Empty: none.
    /// Anonymous mode only.
    pub trusted_user_header: String,
    /// `anonymous` (every client admitted, unauthenticated: for development; logged as a
    /// warning at start) or `jwt` (a valid connection token is required).
    pub auth_mode: AuthMode,
    /// HS256 shared secret for connection tokens (at least 32 bytes). Empty: HS256 off.
    pub jwt_hs256_secret: String,
    /// PEM file with the public key for RS256 (RSA) or ES256 (P-256) tokens. Empty: none.
    pub jwt_public_key_file: String,
    /// JWKS file (JSON) with RS256/ES256 public keys chosen by the token's `kid`. Empty: none.
    pub jwks_file: String,
    /// Required `iss` claim. Empty: not checked.
    pub jwt_issuer: String,
    /// Required `aud` claim. Empty: not checked.
    pub jwt_audience: String,
    /// How long a connection whose token expired may wait for a `refresh` before it is
    /// closed with 4003, in milliseconds.
    pub token_refresh_grace_ms: u64,
    /// Browser origins allowed to connect (`https://app.example.com`). Empty: any.
    /// Requests without an `Origin` header (non-browser clients) are not affected.
    pub allowed_origins: Vec<String>,
    /// Most open WebSocket connections on this node (503 at the upgrade beyond). 0: no limit.
    pub max_connections: usize,
    /// Most open connections of one user on this node (503 at the upgrade beyond). 0: no limit.
    pub max_connections_per_user: usize,
    /// Connection attempts per second from one source address (IPv6: per /64), answered
    /// 429 beyond. 0: no limit.
    pub max_connection_rate_per_ip: u32,
    /// Most frames one client may send per second, of any kind (text, binary,
    /// continuation, ping, pong, empty or not), close 1008 beyond. 0: no limit.
    pub max_inbound_messages_per_sec: u32,
    /// On shutdown, clients are closed (1001) spread over this window, in milliseconds,
    /// so that they do not all reconnect elsewhere in the same second.
    pub drain_window_ms: u64,
    /// Longest time shutdown may take in all, in milliseconds; longer than the drain window.
    pub shutdown_grace_ms: u64,
    /// How publications reach the other nodes: `memory` (a single node, no external
    /// service) or `redis` (nodes joined through Redis 7 pub/sub; docs/cluster.md).
    pub broker: BrokerKind,
    /// The Redis of the cluster (`broker = "redis"`):
    /// `redis[s]://[[user]:password@]host[:port]`, or for `redis_mode = "cluster"` /
    /// `"sentinel"` a comma-separated list of seeds (`redis://u:p@a:7000,b:7001`; a
    /// seed without a scheme takes the first one's scheme and login). `rediss://` is
    /// TLS (with `redis_tls_ca_file`). docs/cluster.md, "Redis deployments".
    pub redis_url: String,
    /// `standalone` (one primary), `cluster` (a Redis Cluster: the seeds are any of
    /// its nodes) or `sentinel` (the seeds are sentinels, default port 26379, which
    /// name the primary of `redis_sentinel_master`).
    pub redis_mode: RedisMode,
    /// The master name the sentinels know (`redis_mode = "sentinel"`).
    pub redis_sentinel_master: String,
    /// The sentinels' ACL user (`redis_mode = "sentinel"`; needs
    /// `redis_sentinel_password`). Empty: the default user. `redis_url`'s login is the
    /// data nodes'; sentinels have their own (docs/cluster.md, "Redis deployments").
    pub redis_sentinel_username: String,
    /// The sentinels' password (their `requirepass`, or the ACL user's). Empty: the
    /// sentinels ask for none.
    pub redis_sentinel_password: String,
    /// A PEM file with the CA certificate(s) that signed Redis's (and the sentinels')
    /// TLS certificates; required with `rediss://`, refused without it.
    pub redis_tls_ca_file: String,
    /// Prefix of every Redis channel and key pushgate uses, so that several
    /// deployments can share one Redis.
    pub redis_prefix: String,
    /// How long Redis may take to answer, in milliseconds: beyond, the node is not
    /// ready (`pushgate_broker_up` 0) and a publication sent but not answered gets
    /// "outcome unknown" (HTTP 504, gRPC `DEADLINE_EXCEEDED`).
    pub redis_timeout_ms: u64,
    /// How long an idempotency key (HTTP `Idempotency-Key`, gRPC `idempotency_key`)
    /// is remembered, in milliseconds: a retry with the same key within it is not
    /// delivered again (cluster-wide with Redis).
    pub idempotency_window_ms: u64,
    /// With `broker = "redis"`: how long a channel with no subscriber left on this
    /// node stays followed on Redis before it is unfollowed, in milliseconds, so that a
    /// client that comes back soon (a reconnect, a quick unsubscribe and subscribe)
    /// costs no `SUNSUBSCRIBE`/`SSUBSCRIBE` pair. 0: unfollowed at once. User keys
    /// never linger ("online" reads their subscriber count).
    pub unfollow_linger_ms: u64,
    /// `text` or `json` logs.
    pub log_format: LogFormat,
    /// Most bytes one client may send per second, as read from the socket (close 1008
    /// beyond). 0: no limit; otherwise at least `max_message_bytes`.
    pub max_inbound_bytes_per_sec: u32,
    /// Most bytes the gRPC idempotency window may hold (estimated: each key's bytes plus
    /// 256 per key); beyond, the oldest keys are forgotten before their 60 s.
    pub grpc_idempotency_max_bytes: usize,
    /// Most connections at once on each internal port (HTTP, gRPC); beyond, new ones
    /// are closed at once. 0: no limit.
    pub internal_max_connections: usize,
    /// Internal HTTP: time a client has to send a complete request head (also the
    /// longest wait for the next request on a kept-alive connection), in milliseconds.
    pub internal_header_timeout_ms: u64,
    /// Internal HTTP: time a client has to send a request body (408 beyond); gRPC: the
    /// longest a call may take to be read and answered, in milliseconds.
    pub internal_body_timeout_ms: u64,
    /// Internal ports: a connection on which no byte moved for this long is closed, in
    /// milliseconds.
    pub internal_idle_timeout_ms: u64,
    /// gRPC: how often an HTTP/2 PING checks each connection, in milliseconds. 0: never.
    pub grpc_keepalive_interval_ms: u64,
    /// gRPC: a PING not acknowledged within this closes the connection, in milliseconds.
    pub grpc_keepalive_timeout_ms: u64,
    /// How far in the future a connection token's `nbf` and `iat` may be (clock skew
    /// between the token issuer and this node), in milliseconds; never applied to `exp`.
    pub jwt_leeway_ms: u64,
    /// Most `refresh` commands one token connection may send per minute (an error reply
    /// beyond; the connection stays). 0: no limit; at most 255.
    pub max_refreshes_per_minute: u32,
    /// Bearer token every internal HTTP request must carry (`Authorization: Bearer
    /// <token>`), except `/livez`, `/readyz` and `/metrics`. Empty: no authentication.
    pub http_token: String,
    /// Most bytes the history of all channels may hold on this node (whole streams
    /// nobody follows are evicted first; docs/history.md).
    pub history_max_bytes: usize,
    /// Channels that keep history, as `[[history]]` tables (TOML only): `channels` (an
    /// exact name or `prefix*`), `size` (publications kept per channel) and `ttl_ms`.
    /// The first matching rule applies; channels without one keep no history.
    pub history: Vec<HistoryConfig>,
    /// Channels that keep presence (who is subscribed, join/leave events), as
    /// `[[presence]]` tables (TOML only): `channels` (an exact name or `prefix*`).
    pub presence: Vec<PresenceConfig>,
    /// With `broker = "redis"`: how long a node's presence entries stay in Redis
    /// without being refreshed, in milliseconds (the node refreshes them every third
    /// of it). A node that dies drops out of presence within it. The same TTL applies
    /// to the Pusher occupancy entries behind cluster-wide `channel_occupied` /
    /// `channel_vacated` webhooks (docs/pusher.md).
    pub presence_ttl_ms: u64,
    /// Pusher Channels apps served beside `pushgate.v1`, as `[[pusher_apps]]` tables
    /// (TOML only): `id`, `key`, `secret`, `client_events`, `client_events_per_second`,
    /// `max_connections`, `webhook_url`, `webhook_events` (docs/pusher.md). None: the
    /// Pusher surface is off.
    pub pusher_apps: Vec<PusherApp>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: "n1".into(),
            ws_addr: ([127, 0, 0, 1], 8080).into(),
            ws_path: "/ws".into(),
            sse_path: "/sse".into(),
            http_addr: ([127, 0, 0, 1], 8081).into(),
            grpc_addr: ([127, 0, 0, 1], 50051).into(),
            grpc_token: String::new(),
            shards: 0,
            pin_shards: false,
            queue_max_frames: 1024,
            queue_max_bytes: 1 << 20,
            slow_policy: SlowPolicy::Disconnect,
            heartbeat_interval_ms: 25_000,
            heartbeat_timeout_ms: 60_000,
            max_message_bytes: 64 * 1024,
            max_payload_bytes: 64 * 1024,
            max_subscriptions_per_conn: 128,
            handshake_timeout_ms: 10_000,
            close_timeout_ms: 3_000,
            compression: Compression::Off,
            compression_level: 1,
            compression_min_bytes: 256,
            trusted_user_header: String::new(),
            auth_mode: AuthMode::Anonymous,
            jwt_hs256_secret: String::new(),
            jwt_public_key_file: String::new(),
            jwks_file: String::new(),
            jwt_issuer: String::new(),
            jwt_audience: String::new(),
            token_refresh_grace_ms: 30_000,
            allowed_origins: Vec::new(),
            max_connections: 0,
            max_connections_per_user: 0,
            max_connection_rate_per_ip: 0,
            max_inbound_messages_per_sec: 100,
            drain_window_ms: 10_000,
            shutdown_grace_ms: 20_000,
            broker: BrokerKind::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_mode: RedisMode::Standalone,
            redis_sentinel_master: String::new(),
            redis_sentinel_username: String::new(),
            redis_sentinel_password: String::new(),
            redis_tls_ca_file: String::new(),
            redis_prefix: "pushgate".into(),
            redis_timeout_ms: 2_000,
            idempotency_window_ms: 60_000,
            unfollow_linger_ms: 2_000,
            log_format: LogFormat::Text,
            max_inbound_bytes_per_sec: 256 * 1024,
            grpc_idempotency_max_bytes: 32 << 20,
            internal_max_connections: 1024,
            internal_header_timeout_ms: 10_000,
            internal_body_timeout_ms: 30_000,
            internal_idle_timeout_ms: 60_000,
            grpc_keepalive_interval_ms: 30_000,
            grpc_keepalive_timeout_ms: 10_000,
            jwt_leeway_ms: 5_000,
            max_refreshes_per_minute: 5,
            http_token: String::new(),
            history_max_bytes: 256 << 20,
            history: Vec::new(),
            presence: Vec::new(),
            presence_ttl_ms: 30_000,
            pusher_apps: Vec::new(),
        }
    }
}

impl Config {
    /// The effective number of shards.
    pub fn shard_count(&self) -> usize {
        match self.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    pub fn hub(&self) -> HubConfig {
        HubConfig {
            shards: self.shard_count(),
            node_id: self.node_id.clone(),
            queue_max_frames: self.queue_max_frames,
            queue_max_bytes: self.queue_max_bytes,
            slow_policy: self.slow_policy,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval_ms),
            heartbeat_timeout: Duration::from_millis(self.heartbeat_timeout_ms),
            max_subscriptions_per_conn: self.max_subscriptions_per_conn,
            max_payload: self.max_payload_bytes,
            token_refresh_grace: Duration::from_millis(self.token_refresh_grace_ms),
            track_interest: self.broker == BrokerKind::Redis,
            history: self.history_rules(),
            history_max_bytes: self.history_max_bytes,
            presence: self.presence_rules(),
            max_refreshes_per_minute: self.max_refreshes_per_minute.min(255) as u8,
            positions_from_broker: self.broker == BrokerKind::Redis,
            compression: self.compression(),
        }
    }

    /// The Redis broker's settings (`broker = "redis"`).
    pub fn redis(&self) -> pushgate_broker::RedisConfig {
        let (_, mode, ca) = self.redis_deployment();
        pushgate_broker::RedisConfig {
            mode,
            tls_ca_file: ca.map(std::path::Path::to_path_buf),
            sentinel_username: Some(self.redis_sentinel_username.clone()),
            sentinel_password: Some(self.redis_sentinel_password.clone()),
            url: self.redis_url.clone(),
            prefix: self.redis_prefix.clone(),
            timeout: Duration::from_millis(self.redis_timeout_ms),
            idempotency_window: self.idempotency_window(),
            presence_ttl: Duration::from_millis(self.presence_ttl_ms),
            unfollow_linger: Duration::from_millis(self.unfollow_linger_ms),
        }
    }

    pub fn idempotency_window(&self) -> Duration {
        Duration::from_millis(self.idempotency_window_ms)
    }

    pub fn edge(&self) -> EdgeConfig {
        EdgeConfig {
            ws_path: self.ws_path.clone(),
            sse_path: self.sse_path.clone(),
            max_message: self.max_message_bytes,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            close_timeout: Duration::from_millis(self.close_timeout_ms),
            allowed_origins: self
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            max_connections: self.max_connections,
            max_connections_per_user: self.max_connections_per_user,
            max_connection_rate_per_ip: self.max_connection_rate_per_ip,
            inbound: pushgate_edge::InboundLimits {
                // Validated to fit: at most 65535.
                frames_per_sec: self.max_inbound_messages_per_sec.min(u16::MAX as u32) as u16,
                bytes_per_sec: self.max_inbound_bytes_per_sec,
            },
            compression: self.compression == Compression::On,
        }
    }
}
