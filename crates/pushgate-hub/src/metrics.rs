//! Per-shard metric handles, resolved once when the shard is built so that the hot
//! path never looks up a label. Names and meanings are listed in `docs/metrics.md`.

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::close::CloseReason;

/// The metric handles one shard (and its connections' writers) update.
#[derive(Clone)]
pub struct ShardMetrics {
    pub connections: Gauge,
    pub opened: Counter,
    closed: [Counter; CloseReason::ALL.len()],
    pub deliveries: Counter,
    /// Of `deliveries`, to SSE connections.
    pub sse_deliveries: Counter,
    /// Open SSE connections (also counted in `connections`).
    pub sse_connections: Gauge,
    /// Of `deliveries`, to the dialect's (Pusher) connections.
    pub dialect_deliveries: Counter,
    /// Open connections of the dialect (also counted in `connections`).
    pub dialect_connections: Gauge,
    pub dropped: Counter,
    pub slow_disconnects: Counter,
    pub heartbeat_reaped: Counter,
    pub subscriptions: Gauge,
    pub channels: Gauge,
    /// Bytes written to sockets (updated by the edge's writers).
    pub bytes_written: Counter,
    /// Frames handed to a connection's writer at once, written with one vectored write
    /// unless the socket fills (recorded when the writer takes its queue).
    pub write_batch_frames: Histogram,
}

impl ShardMetrics {
    pub fn new(shard: usize) -> Self {
        let s = shard.to_string();
        ShardMetrics {
            connections: gauge!("pushgate_connections", "shard" => s.clone()),
            opened: counter!("pushgate_connections_opened_total", "shard" => s.clone()),
            closed: CloseReason::ALL.map(|r| {
                counter!("pushgate_connections_closed_total", "shard" => s.clone(), "reason" => r.label())
            }),
            deliveries: counter!("pushgate_deliveries_total", "shard" => s.clone()),
            sse_deliveries: counter!("pushgate_sse_deliveries_total", "shard" => s.clone()),
            sse_connections: gauge!("pushgate_sse_connections", "shard" => s.clone()),
            dialect_deliveries: counter!("pushgate_protocol_deliveries_total", "shard" => s.clone(), "protocol" => crate::dialect::DIALECT_LABEL),
            dialect_connections: gauge!("pushgate_protocol_connections", "shard" => s.clone(), "protocol" => crate::dialect::DIALECT_LABEL),
            dropped: counter!("pushgate_outbound_dropped_total", "shard" => s.clone()),
            slow_disconnects: counter!("pushgate_slow_consumer_disconnects_total", "shard" => s.clone()),
            heartbeat_reaped: counter!("pushgate_heartbeat_reaped_total", "shard" => s.clone()),
            subscriptions: gauge!("pushgate_subscriptions", "shard" => s.clone()),
            channels: gauge!("pushgate_channels", "shard" => s.clone()),
            bytes_written: counter!("pushgate_bytes_written_total", "shard" => s.clone()),
            write_batch_frames: histogram!("pushgate_write_batch_frames", "shard" => s),
        }
    }

    pub fn closed(&self, reason: CloseReason) -> &Counter {
        &self.closed[reason.index()]
    }
}
