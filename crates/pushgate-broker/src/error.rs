//! Why the broker refused a publication or an operator's call.

use std::sync::Arc;
use std::time::Duration;

use pushgate_hub::PublishError;
use thiserror::Error;

use crate::redis::conn::ConnError;
use crate::redis::resp::Value;

/// Why a publication was refused.
#[derive(Debug, Clone, Error)]
pub enum BrokerError {
    /// The publisher's mistake, or this node is shutting down.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The bus cannot be reached, or refused it: nothing was delivered anywhere.
    #[error("cluster broker unavailable: {0}")]
    Unavailable(#[from] Unavailable),
    /// The publication was sent to Redis but its answer did not come back: it may
    /// have been delivered (now or later). A retry with the same idempotency key
    /// delivers it at most once.
    #[error("outcome unknown: {0}; it may have been delivered: retry with the same idempotency key to deliver it at most once")]
    Uncertain(#[from] Uncertain),
}

/// Why a publication's outcome is unknown.
#[derive(Debug, Clone, Error)]
pub enum Uncertain {
    /// Redis did not answer within `redis_timeout_ms`.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed after the publication was written to it.
    #[error("lost connection to redis: {0}")]
    Lost(Arc<ConnError>),
    /// Redis took it for some of its channels or users and refused it for others.
    #[error("redis took it for some of its targets only: {0}")]
    Partial(String),
}

/// Why the Redis broker cannot take anything now; the broker keeps the last one to
/// answer with while it reconnects.
#[derive(Debug, Clone, Error)]
pub enum Unavailable {
    /// Not connected yet since the node started.
    #[error("connecting to redis")]
    Connecting,
    /// A connection attempt failed, or the subscriber's connection ended.
    #[error("{0}")]
    Connect(Arc<ConnError>),
    /// The publisher's connection failed while in use.
    #[error("lost connection to redis: {0}")]
    Lost(Arc<ConnError>),
    /// Redis answered an `SPUBLISH` with an error.
    #[error("redis: {0}")]
    Refused(String),
    /// Redis stopped answering (no reply within `redis_timeout_ms`).
    #[error("redis did not answer within {0:?}")]
    Stalled(Duration),
    /// Redis answered something this broker does not expect.
    #[error("unexpected message from redis: {0:?}")]
    Unexpected(Value),
    /// The broker's tasks have stopped (the node is shutting down).
    #[error("the broker stopped")]
    Stopped,
}

impl Unavailable {
    pub(crate) fn connect(e: ConnError) -> Unavailable {
        Unavailable::Connect(Arc::new(e))
    }

    pub(crate) fn lost(e: ConnError) -> Unavailable {
        Unavailable::Lost(Arc::new(e))
    }
}

impl BrokerError {
    /// The broker's tasks have stopped.
    pub(crate) fn stopped<T>(_: T) -> BrokerError {
        BrokerError::Unavailable(Unavailable::Stopped)
    }
}
