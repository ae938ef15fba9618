//! The gateway's configuration: one struct, documented defaults, loaded from TOML,
//! overridden by `PUSHGATE_<FIELD>` environment variables and command-line flags,
//! validated before anything starts. Every field is listed in `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use pushgate_edge::EdgeConfig;
use pushgate_grpc::GrpcConfig;
use pushgate_hub::{HistoryRule, HubConfig, SlowPolicy};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use crate::config_kinds::{AuthMode, BrokerKind, LogFormat, RedisMode};
use crate::config_source::Origin;

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
    #[serde(with = "crate::config_kinds::SlowPolicyName")]
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
}

/// One `[[history]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// An exact channel name, or a prefix followed by `*`.
    pub channels: String,
    /// Publications kept per channel.
    pub size: usize,
    /// How long each publication is kept, in milliseconds.
    pub ttl_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: "n1".into(),
            ws_addr: ([127, 0, 0, 1], 8080).into(),
            ws_path: "/ws".into(),
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
            redis_tls_ca_file: String::new(),
            redis_prefix: "pushgate".into(),
            redis_timeout_ms: 2_000,
            idempotency_window_ms: 60_000,
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
        }
    }
}

/// A configuration that cannot be used; the message names the field and, once
/// [`Sources`](crate::Sources) knows it, where its value came from.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The text is not TOML (the message is the parser's).
    #[error("{0}")]
    Syntax(String),
    /// No setting has this name.
    #[error("unknown setting {field:?}{}", hint.as_ref().map(|h| format!(" (did you mean {h}?)")).unwrap_or_default())]
    Unknown { field: String, hint: Option<String> },
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// Another error, with the file line, variable or flag that caused it.
    #[error("{}", at(origin, error))]
    At {
        origin: Origin,
        error: Box<ConfigError>,
    },
}

fn at(origin: &Origin, error: &ConfigError) -> String {
    match origin {
        Origin::File { line, text, .. } => format!("{origin}: {error}\n  {line} | {text}"),
        _ => format!("{origin}: {error}"),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn unknown(field: &str) -> ConfigError {
    ConfigError::Unknown {
        field: field.to_owned(),
        hint: crate::config_source::closest(field),
    }
}

/// serde's "invalid type: string \"two\", expected usize" as an operator reads it.
fn humane(message: &str) -> String {
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "));
    let Some((found, expected)) = rest.and_then(|r| r.rsplit_once(", expected ")) else {
        return message.to_owned();
    };
    let expected = match expected {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a non-negative integer",
        "isize" | "i64" | "i32" => "an integer",
        e => e,
    };
    format!("expected {expected}, found {found}")
}

impl Config {
    /// Loads a TOML file (fields not given keep their defaults); not validated.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::parse_toml(text, "(toml)")
    }

    /// Parses `text`, read from `path`; an error names the line, its setting and its text.
    pub(crate) fn parse_toml(text: &str, path: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let message = e.message();
            let unknown_field = message
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next());
            let span = e.span();
            let key = span
                .as_ref()
                .and_then(|s| crate::config_source::key_before(text, s.start));
            let error = match (unknown_field, key) {
                (Some(f), _) => unknown(f),
                (None, Some(k)) => invalid(k, humane(message)),
                (None, None) => ConfigError::Syntax(message.to_owned()),
            };
            match span {
                Some(s) => Origin::file_line(path, text, s.start).explain(error),
                None => ConfigError::Syntax(format!("{path}: {error}")),
            }
        })
    }

    /// The setting a `PUSHGATE_<FIELD>` variable names; `None` for other variables
    /// and for the binary's own (config file, log filter, `publish` target).
    pub(crate) fn env_field(var: &str) -> Option<String> {
        let field = var.strip_prefix("PUSHGATE_")?;
        (!matches!(field, "CONFIG" | "LOG" | "GRPC")).then(|| field.to_ascii_lowercase())
    }

    /// Applies `PUSHGATE_<FIELD>` variables from `vars` (e.g. `PUSHGATE_WS_ADDR`).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (var, value) in vars {
            if let Some(field) = Self::env_field(&var) {
                self.set(&field, &value)
                    .map_err(|e| Origin::Env(var).explain(e))?;
            }
        }
        Ok(())
    }

    /// Sets one field from its text form, as a flag or environment variable gives it.
    /// A list field takes comma-separated items (`a,b`; empty: the empty list).
    pub fn set(&mut self, field: &str, value: &str) -> Result<(), ConfigError> {
        let mut table = toml::Table::try_from(&*self).expect("the config always serializes");
        let Some(current) = table.get(field) else {
            return Err(unknown(field));
        };
        let parsed = match current {
            toml::Value::String(_) => toml::Value::String(value.to_owned()),
            toml::Value::Integer(_) => toml::Value::Integer(
                value
                    .parse()
                    .map_err(|_| invalid(field, format!("{value:?} is not an integer")))?,
            ),
            toml::Value::Boolean(_) => toml::Value::Boolean(
                value
                    .parse()
                    .map_err(|_| invalid(field, format!("{value:?} is not true or false")))?,
            ),
            toml::Value::Array(_) => toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(|v| toml::Value::String(v.to_owned()))
                    .collect(),
            ),
            _ => toml::Value::String(value.to_owned()),
        };
        table.insert(field.to_owned(), parsed);
        *self = table
            .try_into()
            .map_err(|e: toml::de::Error| invalid(field, humane(e.message())))?;
        Ok(())
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
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
        if self.ws_addr == self.http_addr && self.ws_addr.port() != 0 {
            return Err(invalid("http_addr", "must differ from ws_addr"));
        }
        if self.grpc_addr.port() != 0 && [self.ws_addr, self.http_addr].contains(&self.grpc_addr) {
            return Err(invalid(
                "grpc_addr",
                "must differ from ws_addr and http_addr",
            ));
        }
        if self.grpc_token.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(invalid(
                "grpc_token",
                "printable ASCII without spaces (it travels in an HTTP/2 header)",
            ));
        }
        if self.http_token.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(invalid(
                "http_token",
                "printable ASCII without spaces (it travels in an HTTP header)",
            ));
        }
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
        self.validate_auth()?;
        if self.max_inbound_messages_per_sec > u16::MAX as u32 {
            return Err(invalid("max_inbound_messages_per_sec", "at most 65535"));
        }
        if self.broker == BrokerKind::Redis {
            use pushgate_broker::DeploymentError as E;
            let (url, mode, ca) = self.redis_deployment();
            if let Err(e) = pushgate_broker::redis::deployment::Deployment::parse(url, mode, ca) {
                let field = match e {
                    E::NoMaster => "redis_sentinel_master",
                    E::Ca(..) | E::CaWithoutTls => "redis_tls_ca_file",
                    _ => "redis_url",
                };
                return Err(invalid(field, e.to_string()));
            }
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
        for rule in self.history_rules() {
            rule.validate()
                .map_err(|e| invalid("history", e.to_string()))?;
        }
        if self.history_max_bytes < 1 << 20 {
            return Err(invalid("history_max_bytes", "at least 1048576 (1 MiB)"));
        }
        if self.max_inbound_bytes_per_sec != 0
            && (self.max_inbound_bytes_per_sec as usize) < self.max_message_bytes
        {
            return Err(invalid(
                "max_inbound_bytes_per_sec",
                "0 (no limit) or at least max_message_bytes",
            ));
        }
        if self.grpc_idempotency_max_bytes < 1 << 20 {
            return Err(invalid("grpc_idempotency_max_bytes", "at least 1048576"));
        }
        for (field, ms) in [
            (
                "internal_header_timeout_ms",
                self.internal_header_timeout_ms,
            ),
            ("internal_body_timeout_ms", self.internal_body_timeout_ms),
            ("internal_idle_timeout_ms", self.internal_idle_timeout_ms),
            ("grpc_keepalive_timeout_ms", self.grpc_keepalive_timeout_ms),
        ] {
            if ms == 0 || ms > 24 * 3600 * 1000 {
                return Err(invalid(field, "between 1 ms and one day"));
            }
        }
        if self.grpc_keepalive_interval_ms > 24 * 3600 * 1000 {
            return Err(invalid("grpc_keepalive_interval_ms", "at most one day"));
        }
        if self.jwt_leeway_ms > 300_000 {
            return Err(invalid("jwt_leeway_ms", "at most 300000 (five minutes)"));
        }
        if self.max_refreshes_per_minute > u8::MAX as u32 {
            return Err(invalid("max_refreshes_per_minute", "at most 255"));
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        match self.auth_mode {
            AuthMode::Anonymous => {}
            AuthMode::Jwt => {
                if self.jwt_hs256_secret.is_empty()
                    && self.jwt_public_key_file.is_empty()
                    && self.jwks_file.is_empty()
                {
                    return Err(invalid(
                        "auth_mode",
                        "jwt needs jwt_hs256_secret, jwt_public_key_file or jwks_file",
                    ));
                }
                if !self.trusted_user_header.is_empty() {
                    return Err(invalid(
                        "trusted_user_header",
                        "only for auth_mode = \"anonymous\"; with jwt the token names the user",
                    ));
                }
            }
        }
        if !self.jwt_hs256_secret.is_empty() && self.jwt_hs256_secret.len() < 32 {
            return Err(invalid(
                "jwt_hs256_secret",
                "at least 32 bytes (HS256 needs a 256-bit secret)",
            ));
        }
        for (field, path) in [
            ("jwt_public_key_file", &self.jwt_public_key_file),
            ("jwks_file", &self.jwks_file),
        ] {
            if !path.is_empty() && !Path::new(path).is_file() {
                return Err(invalid(field, format!("{path}: no such file")));
            }
        }
        if self.token_refresh_grace_ms > 24 * 3600 * 1000 {
            return Err(invalid("token_refresh_grace_ms", "at most one day"));
        }
        for o in &self.allowed_origins {
            // An origin is scheme://host[:port]; a browser's Origin header never carries
            // a path, query or user info, so an entry with one could never match.
            let ok = o.split_once("://").is_some_and(|(scheme, host)| {
                let host = host.strip_suffix('/').unwrap_or(host);
                !scheme.is_empty() && !host.is_empty() && !host.contains(['/', '?', '#', '@'])
            });
            if !ok || o.contains(char::is_whitespace) {
                return Err(invalid(
                    "allowed_origins",
                    format!(
                        "{o:?}: an origin is scheme://host[:port] without a path, e.g. https://app.example.com"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The connection-token settings (auth_mode = "jwt"), with the key files read.
    pub fn jwt(&self) -> Result<pushgate_edge::JwtConfig, ConfigError> {
        let read = |field: &'static str, path: &str| -> Result<Option<Vec<u8>>, ConfigError> {
            if path.is_empty() {
                return Ok(None);
            }
            std::fs::read(path)
                .map(Some)
                .map_err(|e| invalid(field, format!("{path}: {e}")))
        };
        let jwks = read("jwks_file", &self.jwks_file)?
            .map(|b| String::from_utf8(b).map_err(|_| invalid("jwks_file", "not UTF-8")))
            .transpose()?;
        let some = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        Ok(pushgate_edge::JwtConfig {
            hs256_secret: some(&self.jwt_hs256_secret).map(String::into_bytes),
            public_key_pem: read("jwt_public_key_file", &self.jwt_public_key_file)?,
            jwks_json: jwks,
            issuer: some(&self.jwt_issuer),
            audience: some(&self.jwt_audience),
            leeway: Duration::from_millis(self.jwt_leeway_ms),
        })
    }

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
            max_refreshes_per_minute: self.max_refreshes_per_minute.min(255) as u8,
            positions_from_broker: self.broker == BrokerKind::Redis,
        }
    }

    fn history_rules(&self) -> Vec<HistoryRule> {
        self.history
            .iter()
            .map(|h| HistoryRule {
                channels: h.channels.clone(),
                size: h.size,
                ttl: Duration::from_millis(h.ttl_ms),
            })
            .collect()
    }

    /// `redis_url`, the mode with its master name, and the CA file, as the broker
    /// takes them.
    fn redis_deployment(&self) -> (&str, pushgate_broker::RedisMode, Option<&std::path::Path>) {
        let mode = match self.redis_mode {
            RedisMode::Standalone => pushgate_broker::RedisMode::Standalone,
            RedisMode::Cluster => pushgate_broker::RedisMode::Cluster,
            RedisMode::Sentinel => pushgate_broker::RedisMode::Sentinel {
                master: self.redis_sentinel_master.clone(),
            },
        };
        let ca = (!self.redis_tls_ca_file.is_empty())
            .then(|| std::path::Path::new(self.redis_tls_ca_file.as_str()));
        (&self.redis_url, mode, ca)
    }

    /// The Redis broker's settings (`broker = "redis"`).
    pub fn redis(&self) -> pushgate_broker::RedisConfig {
        let (_, mode, ca) = self.redis_deployment();
        pushgate_broker::RedisConfig {
            mode,
            tls_ca_file: ca.map(std::path::Path::to_path_buf),
            url: self.redis_url.clone(),
            prefix: self.redis_prefix.clone(),
            timeout: Duration::from_millis(self.redis_timeout_ms),
            idempotency_window: self.idempotency_window(),
        }
    }

    pub fn idempotency_window(&self) -> Duration {
        Duration::from_millis(self.idempotency_window_ms)
    }

    pub fn grpc(&self) -> GrpcConfig {
        GrpcConfig {
            token: self.grpc_token.clone(),
            idempotency_max_bytes: self.grpc_idempotency_max_bytes,
            max_connections: self.internal_max_connections,
            idle_timeout: Duration::from_millis(self.internal_idle_timeout_ms),
            request_timeout: Duration::from_millis(self.internal_body_timeout_ms),
            keepalive_interval: Some(Duration::from_millis(self.grpc_keepalive_interval_ms))
                .filter(|d| !d.is_zero()),
            keepalive_timeout: Duration::from_millis(self.grpc_keepalive_timeout_ms),
            idempotency_ttl: self.idempotency_window(),
            ..GrpcConfig::default()
        }
    }

    /// The internal HTTP port's connection limit and deadlines.
    pub fn http_limits(&self) -> pushgate_ingress::HttpLimits {
        pushgate_ingress::HttpLimits {
            max_connections: self.internal_max_connections,
            header_timeout: Duration::from_millis(self.internal_header_timeout_ms),
            body_timeout: Duration::from_millis(self.internal_body_timeout_ms),
            idle_timeout: Duration::from_millis(self.internal_idle_timeout_ms),
        }
    }

    pub fn edge(&self) -> EdgeConfig {
        EdgeConfig {
            ws_path: self.ws_path.clone(),
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
        }
    }

    /// What the node should warn about at start: an internal port bound beyond loopback
    /// with no token, where anyone who reaches it can publish to every client.
    pub fn exposure_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (field, addr, token_field, token) in [
            ("http_addr", self.http_addr, "http_token", &self.http_token),
            ("grpc_addr", self.grpc_addr, "grpc_token", &self.grpc_token),
        ] {
            if !addr.ip().is_loopback() && token.is_empty() {
                warnings.push(format!(
                    "{field} = {addr} is not a loopback address and {token_field} is empty: \
                     anyone who can reach it may publish to every client. Set {token_field} \
                     (from a secret) or keep the port on a private network (docs/security.md)"
                ));
            }
        }
        warnings
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the config always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(Config::from_toml(&c.to_toml()).unwrap(), c);
    }

    #[test]
    fn env_and_flags_override_by_field_name() {
        let mut c = Config::default();
        c.apply_env([
            ("PUSHGATE_WS_ADDR".to_string(), "0.0.0.0:9000".to_string()),
            ("PUSHGATE_SHARDS".to_string(), "4".to_string()),
            ("PUSHGATE_PIN_SHARDS".to_string(), "true".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ])
        .unwrap();
        assert_eq!(c.ws_addr.port(), 9000);
        assert_eq!(c.shards, 4);
        assert!(c.pin_shards);
        assert!(c
            .set("shards", "many")
            .unwrap_err()
            .to_string()
            .contains("shards"));
        assert!(c
            .set("nope", "1")
            .unwrap_err()
            .to_string()
            .contains("unknown setting"));
    }

    #[test]
    fn unknown_fields_and_bad_values_name_the_field() {
        assert!(Config::from_toml("ws_adr = \"x\"")
            .unwrap_err()
            .to_string()
            .contains("ws_adr"));
        let e = Config::from_toml("slow_policy = \"ignore\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("slow_policy")
                && e.contains("unknown variant `ignore`, expected `disconnect` or `drop_newest`"),
            "{e}"
        );
        let mut c = Config::default();
        let e = c.set("broker", "etcd").unwrap_err().to_string();
        assert!(
            e.contains("broker") && e.contains("`memory` or `redis`"),
            "{e}"
        );
        c.set("log_format", "json").unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        c.set("slow_policy", "drop_newest").unwrap();
        assert_eq!(c.hub().slow_policy, SlowPolicy::DropNewest);
        assert!(c.to_toml().contains("slow_policy = \"drop_newest\""));
        let c = Config {
            heartbeat_timeout_ms: 1000,
            heartbeat_interval_ms: 2000,
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("heartbeat_timeout_ms"));
    }

    #[test]
    fn auth_and_limit_settings_are_validated() {
        let mut c = Config::default();
        assert_eq!(
            c.auth_mode,
            AuthMode::Anonymous,
            "make run works with no setup"
        );
        c.set(
            "allowed_origins",
            "https://a.example, http://b.example:8080",
        )
        .unwrap();
        assert_eq!(c.allowed_origins.len(), 2);
        c.validate().unwrap();
        assert_eq!(c.edge().allowed_origins[1], "http://b.example:8080");
        c.set("allowed_origins", "").unwrap();
        assert!(c.allowed_origins.is_empty());
        c.set("allowed_origins", "example.com").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("allowed_origins"), "{e}");
        for with_path in [
            "https://a.example/app",
            "https://a.example/?x=1",
            "https://u@a.example",
        ] {
            c.set("allowed_origins", with_path).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("allowed_origins"), "{with_path}: {e}");
        }
        c.set("allowed_origins", "https://a.example/").unwrap();
        c.validate().unwrap();
        let mut c = Config::default();
        c.set("auth_mode", "jwt").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("auth_mode"));
        c.set("jwt_hs256_secret", "short").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("jwt_hs256_secret"), "{e}");
        c.set("jwt_hs256_secret", &"s".repeat(32)).unwrap();
        c.validate().unwrap();
        c.set("trusted_user_header", "x-user").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("trusted_user_header"), "{e}");
        let mut c = Config::default();
        c.set("jwks_file", "/nonexistent/jwks.json").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("jwks_file"));
        c.jwks_file.clear();
        c.set("max_inbound_messages_per_sec", "70000").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("max_inbound_messages_per_sec"), "{e}");
        let mut c = Config::default();
        c.set("max_inbound_bytes_per_sec", "1000").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("max_inbound_bytes_per_sec"), "{e}");
        c.set("max_inbound_bytes_per_sec", "0").unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn an_internal_port_beyond_loopback_without_a_token_is_warned_about() {
        let mut c = Config::default();
        assert!(c.exposure_warnings().is_empty(), "loopback by default");
        c.set("http_addr", "0.0.0.0:8081").unwrap();
        c.set("grpc_addr", "[::]:50051").unwrap();
        let w = c.exposure_warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("http_addr") && w[0].contains("http_token"),
            "{w:?}"
        );
        assert!(
            w[1].contains("grpc_addr") && w[1].contains("grpc_token"),
            "{w:?}"
        );
        c.set("http_token", "s3cret").unwrap();
        c.set("grpc_token", "s3cret").unwrap();
        assert!(c.exposure_warnings().is_empty());
        c.set("http_token", "two words").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("http_token"));
    }

    #[test]
    fn grpc_settings_are_validated() {
        let c = Config::default();
        assert_eq!(c.grpc_addr.to_string(), "127.0.0.1:50051");
        assert!(c.grpc().token.is_empty(), "no auth by default");
        let c = Config {
            grpc_addr: c.http_addr,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("grpc_addr"));
        let mut c = Config::default();
        c.set("grpc_token", "two words").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("grpc_token"));
        c.set("grpc_token", "s3cret").unwrap();
        c.validate().unwrap();
        assert_eq!(c.grpc().token, "s3cret");
    }
}
