//! The API's [`Backend`] over the node's [`Pusher`] surface (pusher-ws's `service.rs`):
//! publications through the broker (cluster-wide), subscription counts through its
//! census (cluster-wide),
//! presence users cluster-wide, `terminate_user` through a broker control.

use std::sync::Arc;

use hyper::StatusCode;
use pushgate_broker::CensusError;
use pushgate_hub::PresenceError;
use pushgate_ingress::Refusal;

use super::backend::{Backend, BackendError, Event};
use crate::{Pusher, PusherApp, PusherError};

impl From<PusherError> for BackendError {
    fn from(e: PusherError) -> Self {
        let status = match &e {
            // The broker's refusal classes, as `POST /publish` answers them.
            PusherError::Broker(b) => Refusal::of_broker(b).http_status(),
            PusherError::Presence(PresenceError::NoRule(_)) => StatusCode::BAD_REQUEST,
            PusherError::Presence(_) => StatusCode::SERVICE_UNAVAILABLE,
            // A count that would leave a node out is refused, as an unreachable
            // broker is; a prefix too wide to list is the caller's to narrow.
            PusherError::Census(c) => match c {
                CensusError::Broker(b) => Refusal::of_broker(b).http_status(),
                CensusError::Incomplete { .. } | CensusError::NotHeard => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                CensusError::TooMany { .. } | CensusError::TooManyNames(_) => {
                    StatusCode::BAD_REQUEST
                }
            },
            // Names the API let through but the mapping refuses (too long once
            // mapped), and the rest of what a caller got wrong.
            _ => StatusCode::BAD_REQUEST,
        };
        BackendError::Refused {
            status,
            source: Box::new(e),
        }
    }
}

impl Backend for Arc<Pusher> {
    async fn publish(&self, app: &PusherApp, e: Event) -> Result<(), BackendError> {
        Pusher::publish(
            self,
            app,
            &e.channels,
            &e.name,
            &e.data,
            e.socket_id.as_deref(),
        )
        .await?;
        Ok(())
    }

    async fn channels(
        &self,
        app: &PusherApp,
        prefix: &str,
    ) -> Result<Vec<(String, u64)>, BackendError> {
        Ok(Pusher::channels(self, app, prefix)
            .await?
            .into_iter()
            .map(|c| (c.name, c.subscription_count as u64))
            .collect())
    }

    async fn subscriptions(
        &self,
        app: &PusherApp,
        channels: &[String],
    ) -> Result<Vec<u64>, BackendError> {
        let counts = self.subscription_counts(app, channels).await?;
        Ok(counts.into_iter().map(|n| n as u64).collect())
    }

    async fn users(&self, app: &PusherApp, channel: &str) -> Result<Vec<String>, BackendError> {
        Ok(self.presence_users(app, channel).await?)
    }

    async fn terminate(&self, app: &PusherApp, user: &str) -> Result<(), BackendError> {
        self.terminate_user(app, user).await?;
        Ok(())
    }
}
