//! The API's [`Backend`] over the node's [`Pusher`] surface (pusher-ws's `service.rs`):
//! publications through the broker (cluster-wide), this node's subscription counts,
//! presence users cluster-wide, `terminate_user` through a broker control.

use std::sync::Arc;

use hyper::StatusCode;
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
            .into_iter()
            .map(|c| (c.name, c.subscription_count as u64))
            .collect())
    }

    async fn subscriptions(&self, app: &PusherApp, channel: &str) -> Result<u64, BackendError> {
        Ok(self.subscription_count(app, channel)? as u64)
    }

    async fn users(&self, app: &PusherApp, channel: &str) -> Result<Vec<String>, BackendError> {
        Ok(self.presence_users(app, channel).await?)
    }

    async fn terminate(&self, app: &PusherApp, user: &str) -> Result<(), BackendError> {
        self.terminate_user(app, user).await?;
        Ok(())
    }
}
