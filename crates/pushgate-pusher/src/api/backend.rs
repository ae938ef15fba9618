//! What the HTTP API needs from the rest of the gateway: publish Pusher events, read
//! subscription counts (cluster-wide) and presence members, disconnect a user. `gateway.rs`
//! implements it over [`crate::Pusher`]; the API's unit tests use a fake.

use std::future::Future;

use hyper::StatusCode;

use crate::PusherApp;

/// One event to publish on some channels of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    /// Already a string, as Pusher's API takes it: sent to clients as is.
    pub data: String,
    /// Pusher channel names, checked (1 to 100 of them).
    pub channels: Vec<String>,
    /// The connection that caused the event: it does not receive it.
    pub socket_id: Option<String>,
}

/// Why the gateway could not do what a valid request asked.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The gateway refused what the API let through (a channel name too long once
    /// mapped, ...): 400, or the status the gateway gives it.
    #[error("{source}")]
    Refused {
        status: StatusCode,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("Payload exceeds the gateway's limit of {0} bytes")]
    TooLarge(usize),
    #[error("Gateway overloaded, retry later")]
    Overloaded,
    #[error("Cluster unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl BackendError {
    pub fn status(&self) -> StatusCode {
        match self {
            BackendError::Refused { status, .. } => *status,
            BackendError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BackendError::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            BackendError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The gateway as the HTTP API sees it.
pub trait Backend: Send + Sync + 'static {
    /// Publishes one event on each of its channels.
    fn publish(
        &self,
        app: &PusherApp,
        event: Event,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// The app's channels with subscribers whose names start with `prefix`, each
    /// with its subscription count, on every node (or an error: never a count that
    /// leaves a node out).
    fn channels(
        &self,
        app: &PusherApp,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<(String, u64)>, BackendError>> + Send;

    /// The subscription count of each of `channels` (1 to 100; 0: vacant), in order,
    /// on every node.
    fn subscriptions(
        &self,
        app: &PusherApp,
        channels: &[String],
    ) -> impl Future<Output = Result<Vec<u64>, BackendError>> + Send;

    /// The distinct user ids of a presence channel's members.
    fn users(
        &self,
        app: &PusherApp,
        channel: &str,
    ) -> impl Future<Output = Result<Vec<String>, BackendError>> + Send;

    /// Closes every connection of `user` in the app (`pusher:signin`'s user id).
    fn terminate(
        &self,
        app: &PusherApp,
        user: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
}
