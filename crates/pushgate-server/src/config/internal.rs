//! The internal ports (HTTP and gRPC): their tokens, connection limits and deadlines,
//! and the warning for a port reachable beyond loopback without a token.

use std::time::Duration;

use pushgate_grpc::GrpcConfig;

use super::error::invalid;
use super::{Config, ConfigError};

impl Config {
    /// The bearer tokens travel in headers: printable ASCII without spaces.
    pub(super) fn validate_tokens(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }

    /// The gRPC idempotency window's size, the ports' deadlines and keepalive.
    pub(super) fn validate_internal(&self) -> Result<(), ConfigError> {
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
        Ok(())
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
            ..pushgate_ingress::HttpLimits::default()
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
}
