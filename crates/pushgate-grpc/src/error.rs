//! What the gRPC ingress refuses, and the status code each refusal gets: each falls
//! in one [`Refusal`] class, whose gRPC code this port answers and whose HTTP status
//! the HTTP API answers (pushgate-ingress's `refusal.rs`): the publisher's mistakes
//! are `INVALID_ARGUMENT`, overload is `RESOURCE_EXHAUSTED`, a draining node is
//! `UNAVAILABLE` (retry on another node).

use pushgate_hub::PublishError;
use pushgate_ingress::Refusal;
use pushgate_protocol::{ChannelError, UserError};
use thiserror::Error;
use tonic::{Code, Status};

/// Why a call or a stream item was refused. Nothing was published.
#[derive(Debug, Clone, Error)]
pub enum IngressError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("publication is missing")]
    NoPublication,
    #[error("payload is missing: set text or binary")]
    NoPayload,
    #[error("malformed connection id {0:?}: expected <node>-<n>")]
    BadConnId(String),
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("name a conn or a user")]
    NoSubject,
    #[error("no channels given")]
    NoChannels,
    #[error("{0} channels in one call; at most {max}", max = crate::service::MAX_CHANNELS_PER_CALL)]
    TooManyChannels(usize),
    #[error("channel {name:?}: {error}")]
    BadChannel { name: String, error: ChannelError },
    #[error("close code {0} is not allowed: use 0 (4002), 1000, 1001 or 4000-4999")]
    CloseCode(u32),
    #[error("limit {0}: at most {max}", max = pushgate_hub::history::MAX_READ)]
    Limit(u32),
    #[error("close reason is {0} bytes; at most 123 fit in a close frame")]
    CloseReasonTooLong(usize),
    #[error("gateway overloaded: {0} publications in flight; retry later")]
    Overloaded(usize),
    #[error("idempotency key {0:?}: the first attempt with this key failed; retry")]
    FirstAttemptFailed(String),
    #[error("idempotency key of {0} bytes; at most {max}", max = crate::idempotency::MAX_KEY_BYTES)]
    KeyTooLong(usize),
    #[error("user {name:?}: {error}")]
    BadUser { name: String, error: UserError },
    #[error("{0} users in one call; at most {max}", max = pushgate_hub::MAX_PUBLICATION_USERS)]
    TooManyUsers(usize),
    /// The cluster broker cannot reach Redis: nothing was delivered on this node.
    #[error("cluster broker unavailable: {0}")]
    Unavailable(#[source] pushgate_broker::Unavailable),
    /// Sent to Redis but not answered in time: it may have been delivered.
    #[error("outcome unknown: {0}; it may have been delivered: retry with the same idempotency key to deliver it at most once")]
    Uncertain(#[source] pushgate_broker::Uncertain),
    /// A presence read: no rule for the channel, or the cluster cannot be read.
    #[error(transparent)]
    Presence(#[from] pushgate_hub::PresenceError),
}

impl From<pushgate_broker::BrokerError> for IngressError {
    fn from(e: pushgate_broker::BrokerError) -> IngressError {
        match e {
            pushgate_broker::BrokerError::Publish(p) => IngressError::Publish(p),
            pushgate_broker::BrokerError::Unavailable(u) => IngressError::Unavailable(u),
            pushgate_broker::BrokerError::Uncertain(u) => IngressError::Uncertain(u),
        }
    }
}

impl IngressError {
    /// The class of this refusal, shared with the HTTP API.
    pub fn refusal(&self) -> Refusal {
        match self {
            IngressError::Publish(p) => Refusal::of_publish(p),
            IngressError::Unavailable(_) => Refusal::Unavailable,
            IngressError::Uncertain(_) => Refusal::Uncertain,
            IngressError::Overloaded(_) => Refusal::Overloaded,
            IngressError::FirstAttemptFailed(_) => Refusal::Aborted,
            IngressError::Presence(pushgate_hub::PresenceError::NoRule(_)) => Refusal::Invalid,
            IngressError::Presence(_) => Refusal::Unavailable,
            IngressError::NoPublication
            | IngressError::NoPayload
            | IngressError::BadConnId(_)
            | IngressError::Empty(_)
            | IngressError::NoSubject
            | IngressError::NoChannels
            | IngressError::TooManyChannels(_)
            | IngressError::BadChannel { .. }
            | IngressError::CloseCode(_)
            | IngressError::Limit(_)
            | IngressError::CloseReasonTooLong(_)
            | IngressError::KeyTooLong(_)
            | IngressError::BadUser { .. }
            | IngressError::TooManyUsers(_) => Refusal::Invalid,
        }
    }

    /// The gRPC status code of this refusal.
    pub fn code(&self) -> Code {
        match self {
            // Not a refused publication: a presence read of a channel without a rule.
            IngressError::Presence(pushgate_hub::PresenceError::NoRule(_)) => Code::NotFound,
            _ => self.refusal().grpc_code(),
        }
    }
}

impl From<IngressError> for Status {
    fn from(e: IngressError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_maps_to_the_documented_code() {
        let cases = [
            (
                IngressError::Publish(PublishError::NoTarget),
                Code::InvalidArgument,
            ),
            (
                IngressError::Publish(PublishError::TooLarge(10, 5)),
                Code::InvalidArgument,
            ),
            (
                IngressError::Publish(PublishError::ShuttingDown),
                Code::Unavailable,
            ),
            (IngressError::Overloaded(3), Code::ResourceExhausted),
            (
                IngressError::Unavailable(pushgate_broker::Unavailable::Connecting),
                Code::Unavailable,
            ),
            (IngressError::BadConnId("x".into()), Code::InvalidArgument),
            (IngressError::FirstAttemptFailed("k".into()), Code::Aborted),
            (IngressError::KeyTooLong(300), Code::InvalidArgument),
            (
                IngressError::Publish(PublishError::TooManyTargets {
                    kind: "channel",
                    count: 101,
                    max: 100,
                }),
                Code::InvalidArgument,
            ),
            (
                IngressError::Uncertain(pushgate_broker::Uncertain::Timeout(
                    std::time::Duration::from_secs(2),
                )),
                Code::DeadlineExceeded,
            ),
        ];
        for (e, code) in cases {
            let s = Status::from(e.clone());
            assert_eq!(s.code(), code, "{e}");
            assert_eq!(s.message(), e.to_string());
        }
        assert!(IngressError::Publish(PublishError::TooLarge(10, 5))
            .to_string()
            .contains("exceeds the limit of 5 bytes"));
        // The HTTP API answers the same classes: too large is 413 there.
        let too_large = IngressError::Publish(PublishError::TooLarge(10, 5)).refusal();
        assert_eq!(too_large, Refusal::TooLarge);
        assert_eq!(too_large.http_status().as_u16(), 413);
        assert_eq!(
            IngressError::Overloaded(3).refusal().http_status().as_u16(),
            429
        );
    }
}
