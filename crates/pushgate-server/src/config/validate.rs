//! [`Config::validate`]: every field checked, in a fixed order (the error names the
//! first bad field), and the checks that belong to no narrower concern.

use super::error::invalid;
use super::{BrokerKind, Config, ConfigError};

impl Config {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_node()?;
        self.validate_tokens()?;
        self.validate_hub()?;
        self.validate_compression()?;
        self.validate_auth()?;
        self.validate_inbound_frames()?;
        self.validate_broker()?;
        self.validate_history()?;
        self.validate_presence()?;
        self.pusher_apps()?;
        self.validate_inbound_bytes()?;
        self.validate_internal()?;
        self.validate_token_limits()
    }

    /// The node's id, the WebSocket path and the three addresses.
    fn validate_node(&self) -> Result<(), ConfigError> {
        if self.node_id.is_empty()
            || self.node_id.len() > 64
            || !self
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(invalid("node_id", "1-64 letters, digits, '_', '.' or '-'"));
        }
        if !self.ws_path.starts_with('/') {
            return Err(invalid("ws_path", "must start with '/'"));
        }
        if !(self.sse_path.is_empty() || self.sse_path.starts_with('/')) {
            return Err(invalid(
                "sse_path",
                "must start with '/' (or be empty: no SSE)",
            ));
        }
        if self.sse_path == self.ws_path {
            return Err(invalid("sse_path", "must differ from ws_path"));
        }
        if self.ws_addr == self.http_addr && self.ws_addr.port() != 0 {
            return Err(invalid("http_addr", "must differ from ws_addr"));
        }
        if self.grpc_addr.port() != 0 && [self.ws_addr, self.http_addr].contains(&self.grpc_addr) {
            return Err(invalid(
                "grpc_addr",
                "must differ from ws_addr and http_addr",
            ));
        }
        Ok(())
    }

    /// Shards, queues, heartbeats, message sizes and the shutdown windows.
    fn validate_hub(&self) -> Result<(), ConfigError> {
        if self.shards > 1024 {
            return Err(invalid("shards", "at most 1024"));
        }
        if self.queue_max_frames == 0 {
            return Err(invalid("queue_max_frames", "must be at least 1"));
        }
        if self.queue_max_bytes < 1024 || self.queue_max_bytes > u32::MAX as usize {
            return Err(invalid(
                "queue_max_bytes",
                "must be between 1024 and 4294967295",
            ));
        }
        if self.heartbeat_interval_ms < 10 {
            return Err(invalid("heartbeat_interval_ms", "must be at least 10"));
        }
        if self.heartbeat_timeout_ms > 24 * 3600 * 1000 {
            return Err(invalid("heartbeat_timeout_ms", "at most one day"));
        }
        if self.heartbeat_timeout_ms <= self.heartbeat_interval_ms {
            return Err(invalid(
                "heartbeat_timeout_ms",
                "must be longer than heartbeat_interval_ms",
            ));
        }
        if self.max_message_bytes < 125 {
            return Err(invalid("max_message_bytes", "must be at least 125"));
        }
        if self.max_payload_bytes == 0 || self.max_payload_bytes > self.queue_max_bytes {
            return Err(invalid(
                "max_payload_bytes",
                "must be between 1 and queue_max_bytes",
            ));
        }
        if self.handshake_timeout_ms == 0 {
            return Err(invalid("handshake_timeout_ms", "must be positive"));
        }
        if self.shutdown_grace_ms <= self.drain_window_ms {
            return Err(invalid(
                "shutdown_grace_ms",
                "must be longer than drain_window_ms",
            ));
        }
        Ok(())
    }

    /// Frames per second from one client.
    fn validate_inbound_frames(&self) -> Result<(), ConfigError> {
        if self.max_inbound_messages_per_sec > u16::MAX as u32 {
            return Err(invalid("max_inbound_messages_per_sec", "at most 65535"));
        }
        Ok(())
    }

    /// Bytes per second from one client: no limit, or room for a whole message.
    fn validate_inbound_bytes(&self) -> Result<(), ConfigError> {
        if self.max_inbound_bytes_per_sec != 0
            && (self.max_inbound_bytes_per_sec as usize) < self.max_message_bytes
        {
            return Err(invalid(
                "max_inbound_bytes_per_sec",
                "0 (no limit) or at least max_message_bytes",
            ));
        }
        Ok(())
    }

    /// The Redis broker's URL, key prefix, timeout and idempotency window.
    fn validate_broker(&self) -> Result<(), ConfigError> {
        if self.broker == BrokerKind::Redis {
            self.validate_redis_deployment()?;
        }
        if self.redis_prefix.is_empty()
            || self.redis_prefix.len() > 64
            || self
                .redis_prefix
                .contains(|c: char| c.is_whitespace() || c == '{' || c == '}')
        {
            // Braces would make the prefix the Redis Cluster hash tag of every key.
            return Err(invalid(
                "redis_prefix",
                "1-64 characters, no spaces or braces",
            ));
        }
        if !(50..=60_000).contains(&self.redis_timeout_ms) {
            return Err(invalid("redis_timeout_ms", "50 to 60000"));
        }
        if !(1_000..=7 * 24 * 3600 * 1000).contains(&self.idempotency_window_ms) {
            return Err(invalid(
                "idempotency_window_ms",
                "1000 (1 s) to 604800000 (7 days)",
            ));
        }
        if self.unfollow_linger_ms > 600_000 {
            return Err(invalid(
                "unfollow_linger_ms",
                "0 (off) to 600000 (10 minutes)",
            ));
        }
        Ok(())
    }
}
