//! Where the webhooks' events come from.
//!
//! - `member_added`, `member_removed`, `client_event`: the WebSocket side calls
//!   [`PusherEvents`] (pusher-ws: `dialect.rs` for presence, `ws/client.rs` for client
//!   events); [`Webhooks`] implements it.
//! - `channel_occupied`, `channel_vacated`: the hub's channel observer
//!   ([`pushgate_hub::Interest::observe_channels`], installed by [`Webhooks::observe`]),
//!   exact node-wide transitions taken under the registry's lock. The
//!   `PusherEvents::channel_occupied`/`channel_vacated` calls of the WebSocket side
//!   (a subscriber count read after the subscribe, which two subscribers on different
//!   shards can both miss) are ignored here so that nothing is sent twice.

use pushgate_hub::Hub;

use super::Webhooks;
use crate::{channel, PusherApp, PusherEvents};

impl PusherEvents for Webhooks {
    fn client_event(
        &self,
        app: &PusherApp,
        channel: &str,
        event: &str,
        data: &str,
        socket_id: &str,
        user_id: Option<&str>,
    ) {
        Webhooks::client_event(self, &app.id, channel, event, data, socket_id, user_id);
    }

    fn member_added(&self, app: &PusherApp, channel: &str, user_id: &str) {
        Webhooks::member_added(self, &app.id, channel, user_id);
    }

    fn member_removed(&self, app: &PusherApp, channel: &str, user_id: &str) {
        Webhooks::member_removed(self, &app.id, channel, user_id);
    }
}

impl Webhooks {
    /// Sends `channel_occupied` / `channel_vacated` from the hub's channel observer, for
    /// the Pusher channels (`pusher/<app>/<name>`) of apps with webhooks. Call before
    /// the first connection; `false` if the hub already had an observer.
    pub fn observe(&self, hub: &Hub) -> bool {
        if !self.any() {
            return true;
        }
        let hooks = self.clone();
        hub.interest()
            .observe_channels(Box::new(move |pg, occupied| {
                let Some((app, name)) = channel::from_pushgate(pg) else {
                    return; // a pushgate.v1 channel
                };
                if occupied {
                    hooks.channel_occupied(&app, &name);
                } else {
                    hooks.channel_vacated(&app, &name);
                }
            }))
            .is_ok()
    }
}
