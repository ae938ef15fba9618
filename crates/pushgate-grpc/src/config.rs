//! The gRPC ingress's settings (a part of the gateway's config).

use std::time::Duration;

/// Settings of the gRPC ingress.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// Bearer token every `Pushgate` call must carry; empty: no authentication.
    pub token: String,
    /// Most unary publications in flight at once; beyond, `Publish` is refused with
    /// `RESOURCE_EXHAUSTED` rather than queued without bound.
    pub max_in_flight: usize,
    /// Most publications of one `PublishStream` submitted but not yet acked. A full
    /// window stops reading the stream, so HTTP/2 flow control pushes back on the
    /// publisher.
    pub stream_window: usize,
    /// How long an idempotency key is remembered after its publication was accepted.
    pub idempotency_ttl: Duration,
    /// Most idempotency keys remembered; the oldest are forgotten first.
    pub idempotency_capacity: usize,
    /// Most bytes the idempotency window may hold (estimated: each key's bytes plus
    /// 256 per key); the oldest keys are forgotten first.
    pub idempotency_max_bytes: usize,
    /// Most connections at once; beyond, new ones are closed at once. 0: no limit.
    pub max_connections: usize,
    /// A connection on which no byte moved for this long is closed (a half-sent
    /// preface, an idle socket; keepalive pings count as traffic).
    pub idle_timeout: Duration,
    /// Longest time one call may take to be read and answered (for a stream: until its
    /// replies start); tonic answers `CANCELLED` beyond.
    pub request_timeout: Duration,
    /// How often an HTTP/2 PING checks that the publisher is still there; `None`: never.
    pub keepalive_interval: Option<Duration>,
    /// A PING not acknowledged within this closes the connection.
    pub keepalive_timeout: Duration,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            token: String::new(),
            max_in_flight: 4096,
            stream_window: 1024,
            idempotency_ttl: Duration::from_secs(60),
            idempotency_capacity: 100_000,
            idempotency_max_bytes: 32 << 20,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            keepalive_interval: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}
