//! What the HTTP API needs from the rest of the gateway: publish Pusher events, read
//! channel occupancy and presence members, disconnect a user. [`crate::PusherHub`]
//! implements it over the hub and the broker; the API's unit tests use a fake.

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

/// A channel's occupancy, as the API reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Subscriptions (connections) to the channel.
    pub subscriptions: u64,
    /// Distinct users, for a presence channel; `None` for the others.
    pub users: Option<u64>,
}

/// Why the gateway could not do what a valid request asked.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
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

    /// The app's occupied channels (at least one subscription), with their occupancy.
    fn channels(
        &self,
        app: &PusherApp,
    ) -> impl Future<Output = Result<Vec<(String, Occupancy)>, BackendError>> + Send;

    /// One channel's occupancy (zero subscriptions: vacant).
    fn channel(
        &self,
        app: &PusherApp,
        channel: &str,
    ) -> impl Future<Output = Result<Occupancy, BackendError>> + Send;

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
