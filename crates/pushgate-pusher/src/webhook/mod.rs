//! Webhooks, sent like Pusher's (docs/pusher.md, "Webhooks"): `channel_occupied`,
//! `channel_vacated`, `member_added`, `member_removed` and `client_event`, POSTed to
//! an app's `webhook_url` as `{"time_ms":…,"events":[…]}`, signed with
//! `X-Pusher-Key` and `X-Pusher-Signature` = hex HMAC-SHA256(secret, body).
//!
//! [`Webhooks`] is what the rest of the gateway calls: each call is one `try_send` on
//! the app's bounded queue, so the fan-out path and the shards never wait for a
//! receiver. A full queue drops the event and counts it in
//! `pushgate_pusher_webhook_events_dropped_total`.
//!
//! - `event`: one event's JSON.
//! - `sender`: one app's task: batches, signs, POSTs, retries.
//! - `backoff`: the retry schedule.
//! - `sink`: where the events come from (the WebSocket side, the hub's channel
//!   observer, and with a Redis broker the cluster-wide occupancy it feeds).

mod backoff;
mod event;
mod sender;
mod sink;

use std::collections::HashMap;
use std::sync::Arc;

use hyper::Uri;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use backoff::Backoff;
pub use event::WebhookEvent;
pub use sender::{body, take_batch, MAX_BATCH};

use crate::{PusherApp, PusherApps};

/// Events one app's queue holds while its receiver is slow or down.
pub const QUEUE: usize = 10_000;

/// Why an app's webhooks cannot be set up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("app `{id}`: webhook_url {url:?} is not an http:// URL with a host ({reason})")]
    Url {
        id: String,
        url: String,
        reason: &'static str,
    },
}

/// Checks a `webhook_url`: `http://host[:port]/path`. `https://` is refused: this
/// node's client has no TLS (docs/pusher.md says how to front it).
pub fn parse_url(app: &PusherApp) -> Result<Uri, WebhookError> {
    let bad = |reason| WebhookError::Url {
        id: app.id.clone(),
        url: app.webhook_url.clone(),
        reason,
    };
    let uri: Uri = app.webhook_url.parse().map_err(|_| bad("not a URI"))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// is supported"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(uri)
}

/// What became of an event handed to [`Webhooks::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    Yes,
    /// The app has no webhook, or not for this event.
    NotWanted,
    /// The app's queue was full (or its sender stopped): counted, not sent.
    Dropped,
}

/// One app's queue and the events it wants.
struct AppQueue {
    tx: mpsc::Sender<WebhookEvent>,
    /// Empty: every event.
    wanted: Vec<String>,
    dropped: metrics::Counter,
}

/// The webhook senders of a node's apps; cheap to clone. Apps without a
/// `webhook_url` have none, and calls for them cost one map lookup.
#[derive(Clone, Default)]
pub struct Webhooks {
    apps: Arc<HashMap<String, AppQueue>>,
}

impl Webhooks {
    /// Starts one sender task per app with a `webhook_url`, on the current runtime,
    /// until `stop`.
    pub fn start(
        apps: &PusherApps,
        backoff: Backoff,
        stop: &CancellationToken,
    ) -> Result<Webhooks, WebhookError> {
        let mut queues = HashMap::new();
        for app in apps.iter().filter(|a| !a.webhook_url.is_empty()) {
            let url = parse_url(app)?;
            let (tx, rx) = mpsc::channel(QUEUE);
            let target = sender::Target {
                app_id: app.id.clone(),
                url,
                key: app.key.clone(),
                secret: app.secret.clone(),
            };
            tokio::spawn(sender::run(target, rx, backoff, stop.clone()));
            let dropped = metrics::counter!("pushgate_pusher_webhook_events_dropped_total", "app" => app.id.clone());
            queues.insert(
                app.id.clone(),
                AppQueue {
                    tx,
                    wanted: app.webhook_events.clone(),
                    dropped,
                },
            );
        }
        Ok(Webhooks {
            apps: Arc::new(queues),
        })
    }

    /// Whether any app has webhooks.
    pub fn any(&self) -> bool {
        !self.apps.is_empty()
    }

    /// Whether app `app_id` has a webhook that sends events named `name`.
    pub fn wants(&self, app_id: &str, name: &str) -> bool {
        self.apps
            .get(app_id)
            .is_some_and(|q| q.wanted.is_empty() || q.wanted.iter().any(|w| w == name))
    }

    /// The apps whose webhook sends `channel_occupied` or `channel_vacated`.
    pub fn occupancy_apps(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .apps
            .keys()
            .filter(|id| self.wants(id, "channel_occupied") || self.wants(id, "channel_vacated"))
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// Queues `event` for app `app_id` if it wants it; never waits.
    pub fn send(&self, app_id: &str, event: WebhookEvent) -> Queued {
        let Some(q) = self.apps.get(app_id) else {
            return Queued::NotWanted;
        };
        if !q.wanted.is_empty() && !q.wanted.iter().any(|w| w == event.name()) {
            return Queued::NotWanted;
        }
        if q.tx.try_send(event).is_err() {
            q.dropped.increment(1);
            return Queued::Dropped;
        }
        Queued::Yes
    }

    pub fn channel_occupied(&self, app_id: &str, channel: &str) {
        let _ = self.send(
            app_id,
            WebhookEvent::ChannelOccupied {
                channel: channel.into(),
            },
        );
    }

    pub fn channel_vacated(&self, app_id: &str, channel: &str) {
        let _ = self.send(
            app_id,
            WebhookEvent::ChannelVacated {
                channel: channel.into(),
            },
        );
    }

    pub fn member_added(&self, app_id: &str, channel: &str, user_id: &str) {
        let _ = self.send(
            app_id,
            WebhookEvent::MemberAdded {
                channel: channel.into(),
                user_id: user_id.into(),
            },
        );
    }

    pub fn member_removed(&self, app_id: &str, channel: &str, user_id: &str) {
        let _ = self.send(
            app_id,
            WebhookEvent::MemberRemoved {
                channel: channel.into(),
                user_id: user_id.into(),
            },
        );
    }

    /// A `client-*` event a connection sent (`user_id` on presence channels).
    pub fn client_event(
        &self,
        app_id: &str,
        channel: &str,
        event: &str,
        data: &str,
        socket_id: &str,
        user_id: Option<&str>,
    ) {
        let _ = self.send(
            app_id,
            WebhookEvent::ClientEvent {
                channel: channel.into(),
                event: event.into(),
                data: data.into(),
                socket_id: socket_id.into(),
                user_id: user_id.map(Into::into),
            },
        );
    }
}

#[cfg(test)]
mod tests;
