//! Client events (`client-*` on private and presence channels, when the app allows
//! them) and user sign-in (`pusher:signin`).
//!
//! A client event is published through the node's broker like any trigger (so it
//! reaches every node), excluding its sender, with the sender's `user_id` on presence
//! channels. At most `client_events_per_second` per connection (fixed one-second
//! windows); beyond, `pusher:error` 4301 and the event is dropped.

use std::sync::OnceLock;
use std::time::Instant;

use pushgate_hub::ConnHandle;
use serde_json::Value;

use super::{codes, PusherSurface};
use crate::auth;
use crate::channel;
use crate::wire;

/// Seconds since the first client event of the process: the meters' clock.
fn now_second() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_secs()
}

/// Why a client event was refused before publication.
enum Refused {
    Disabled,
    NotSubscribed,
    WrongKind,
    Rate(u32),
}

impl PusherSurface {
    pub(super) fn client_event(
        &self,
        handle: &ConnHandle,
        event: String,
        channel: String,
        data: String,
    ) {
        let conn = handle.id();
        let checked = self.sessions.with(conn, |s| {
            if !s.app.client_events {
                return Err(Refused::Disabled);
            }
            let Some(sub) = s.sub(&channel) else {
                return Err(Refused::NotSubscribed);
            };
            if !sub.kind.allows_client_events() {
                return Err(Refused::WrongKind);
            }
            let user_id = sub.user_id.clone();
            let now = now_second();
            if s.meter.0 != now {
                s.meter = (now, 0);
            }
            s.meter.1 += 1;
            let max = s.app.client_events_per_second;
            if s.meter.1 > max {
                return Err(Refused::Rate(max));
            }
            Ok((s.app.clone(), s.socket_id.clone(), user_id))
        });
        let (app, socket_id, user_id) = match checked {
            None => return,
            Some(Ok(v)) => v,
            Some(Err(r)) => {
                let (code, message) = match r {
                    Refused::Disabled => (None, "To send client events, you must enable this feature in the Settings page of your dashboard.".to_owned()),
                    Refused::NotSubscribed => (None, format!("Client event rejected - not subscribed to {channel}")),
                    Refused::WrongKind => (None, "Client event rejected - only supported on private and presence channels".to_owned()),
                    Refused::Rate(max) => (Some(codes::CLIENT_EVENT_RATE), format!("Client event rejected - only {max} accepted per second")),
                };
                if let Some(c) = code {
                    crate::metrics::refused(c);
                }
                return handle.send(wire::error(code, &message));
            }
        };
        crate::metrics::client_event();
        if let Some(events) = self.pusher().events() {
            events.client_event(
                &app,
                &channel,
                &event,
                &data,
                &socket_id,
                user_id.as_deref(),
            );
        }
        let pusher = self.pusher().clone();
        tokio::spawn(async move {
            let channels = [channel];
            let published = pusher
                .publish_as(
                    &app,
                    &channels,
                    &event,
                    &data,
                    Some(&socket_id),
                    user_id.as_deref(),
                )
                .await;
            if let Err(e) = published {
                pusher.hub().send_to(
                    conn,
                    wire::error(None, &format!("Client event rejected - {e}")),
                );
            }
        });
    }

    pub(super) fn signin(&self, handle: &ConnHandle, auth_sig: &str, user_data: &str) {
        let conn = handle.id();
        let Some((app, socket_id)) = self
            .sessions
            .with(conn, |s| (s.app.clone(), s.socket_id.clone()))
        else {
            return;
        };
        if !auth::check_signin(&app, &socket_id, user_data, auth_sig) {
            crate::metrics::auth_refused();
            return handle.send(wire::error(
                Some(codes::UNAUTHORIZED),
                "Invalid signature for pusher:signin",
            ));
        }
        let id = serde_json::from_str::<Value>(user_data)
            .ok()
            .and_then(|v| match v.get("id") {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            });
        let Some(id) = id else {
            return handle.send(wire::error(
                Some(codes::UNAUTHORIZED),
                "user_data must be JSON with an id",
            ));
        };
        let user = match channel::user_to_pushgate(&app.id, &id) {
            Ok(u) => u,
            Err(e) => return handle.send(wire::error(Some(codes::UNAUTHORIZED), &e.to_string())),
        };
        handle.set_user(&user);
        self.sessions.with(conn, |s| s.user = Some(id));
        handle.send(wire::signin_success(user_data));
    }
}
