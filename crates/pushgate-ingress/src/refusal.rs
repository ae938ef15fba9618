//! How a refused publication is answered, the same way on both ingresses: each
//! refusal falls in one [`Refusal`] class, and each class has one HTTP status and one
//! gRPC code. The HTTP API and the gRPC service both answer through it, so a refusal
//! cannot mean one thing on one port and another on the other (docs/http.md, "Status
//! codes", and docs/grpc.md share its table).
//!
//! The classes say who is at fault and what a retry can do, which is what a publisher
//! acts on: fix the request, wait, retry elsewhere, or retry with the same key.

use hyper::StatusCode;
use pushgate_broker::BrokerError;
use pushgate_hub::PublishError;
use tonic::Code;

/// The kind of a refused publication: nothing was delivered, except for
/// [`Refusal::Uncertain`], where it may have been.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The publisher's mistake (no target, a bad name, too many targets, a malformed
    /// field): the same request fails the same way. HTTP 400, gRPC `INVALID_ARGUMENT`.
    Invalid,
    /// The payload is over `max_payload_bytes`: the publisher's mistake too. HTTP has
    /// a status of its own for it (413); gRPC has none, and `RESOURCE_EXHAUSTED` would
    /// tell the client to retry later, which cannot help: `INVALID_ARGUMENT`.
    TooLarge,
    /// Too many publications in flight on this node: retry later (with backoff).
    /// HTTP 429, gRPC `RESOURCE_EXHAUSTED`.
    Overloaded,
    /// This node is shutting down, or the cluster broker cannot reach Redis: nothing
    /// was delivered anywhere; retry, on another node if need be. HTTP 503, gRPC
    /// `UNAVAILABLE`.
    Unavailable,
    /// Sent to Redis but not answered in time: it may have been delivered. Retry with
    /// the same idempotency key to deliver it at most once. HTTP 504, gRPC
    /// `DEADLINE_EXCEEDED` (the gRPC code for "may have completed").
    Uncertain,
    /// A retry that waited for the first attempt with its idempotency key, which
    /// failed: retry. HTTP 409, gRPC `ABORTED`.
    Aborted,
}

impl Refusal {
    /// Every class, for tests and docs.
    pub const ALL: [Refusal; 6] = [
        Refusal::Invalid,
        Refusal::TooLarge,
        Refusal::Overloaded,
        Refusal::Unavailable,
        Refusal::Uncertain,
        Refusal::Aborted,
    ];

    /// The class of a refusal by the hub.
    pub fn of_publish(e: &PublishError) -> Refusal {
        match e {
            PublishError::TooLarge(..) => Refusal::TooLarge,
            PublishError::ShuttingDown => Refusal::Unavailable,
            PublishError::NoTarget
            | PublishError::BadChannel { .. }
            | PublishError::BadUser { .. }
            | PublishError::TooManyTargets { .. } => Refusal::Invalid,
        }
    }

    /// The class of a refusal by the broker (the hub's, or the cluster bus').
    pub fn of_broker(e: &BrokerError) -> Refusal {
        match e {
            BrokerError::Publish(p) => Refusal::of_publish(p),
            BrokerError::Unavailable(_) => Refusal::Unavailable,
            BrokerError::Uncertain(_) => Refusal::Uncertain,
        }
    }

    /// The HTTP API's status for this class.
    pub fn http_status(self) -> StatusCode {
        match self {
            Refusal::Invalid => StatusCode::BAD_REQUEST,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Uncertain => StatusCode::GATEWAY_TIMEOUT,
            Refusal::Aborted => StatusCode::CONFLICT,
        }
    }

    /// The gRPC ingress's code for this class (also a stream item's `ItemError.code`).
    pub fn grpc_code(self) -> Code {
        match self {
            Refusal::Invalid | Refusal::TooLarge => Code::InvalidArgument,
            Refusal::Overloaded => Code::ResourceExhausted,
            Refusal::Unavailable => Code::Unavailable,
            Refusal::Uncertain => Code::DeadlineExceeded,
            Refusal::Aborted => Code::Aborted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_broker::{Unavailable, Uncertain};
    use std::time::Duration;

    #[test]
    fn each_class_has_its_documented_http_status_and_grpc_code() {
        let table = [
            (Refusal::Invalid, 400, Code::InvalidArgument),
            (Refusal::TooLarge, 413, Code::InvalidArgument),
            (Refusal::Overloaded, 429, Code::ResourceExhausted),
            (Refusal::Unavailable, 503, Code::Unavailable),
            (Refusal::Uncertain, 504, Code::DeadlineExceeded),
            (Refusal::Aborted, 409, Code::Aborted),
        ];
        assert_eq!(table.map(|t| t.0), Refusal::ALL, "every class is listed");
        for (class, status, code) in table {
            assert_eq!(class.http_status().as_u16(), status, "{class:?}");
            assert_eq!(class.grpc_code(), code, "{class:?}");
        }
    }

    #[test]
    fn each_publish_and_broker_error_falls_in_its_class() {
        let channel = pushgate_protocol::validate_channel("").unwrap_err();
        let user = pushgate_protocol::validate_user("").unwrap_err();
        let cases = [
            (PublishError::NoTarget, Refusal::Invalid),
            (
                PublishError::BadChannel {
                    name: String::new(),
                    error: channel,
                },
                Refusal::Invalid,
            ),
            (
                PublishError::BadUser {
                    name: String::new(),
                    error: user,
                },
                Refusal::Invalid,
            ),
            (
                PublishError::TooManyTargets {
                    kind: "channel",
                    count: 101,
                    max: 100,
                },
                Refusal::Invalid,
            ),
            (PublishError::TooLarge(10, 5), Refusal::TooLarge),
            (PublishError::ShuttingDown, Refusal::Unavailable),
        ];
        for (e, class) in cases {
            assert_eq!(Refusal::of_publish(&e), class, "{e}");
            assert_eq!(Refusal::of_broker(&BrokerError::Publish(e)), class);
        }
        assert_eq!(
            Refusal::of_broker(&BrokerError::Unavailable(Unavailable::Connecting)),
            Refusal::Unavailable
        );
        assert_eq!(
            Refusal::of_broker(&BrokerError::Uncertain(Uncertain::Timeout(
                Duration::from_secs(2)
            ))),
            Refusal::Uncertain
        );
    }
}
