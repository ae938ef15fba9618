//! Where the webhooks' events come from.
//!
//! - `member_added`, `member_removed`, `client_event`: the WebSocket side calls
//!   [`PusherEvents`] (pusher-ws: `dialect.rs` for presence, `ws/client.rs` for client
//!   events); [`Webhooks`] implements it.
//! - `channel_occupied`, `channel_vacated`: the hub's channel observer
//!   ([`pushgate_hub::Interest::observe_channels`], installed by [`Webhooks::observe`]),
//!   exact node-wide transitions taken under the registry's lock. On one node (the
//!   in-process broker) they are the cluster's and are sent as they come. With a Redis
//!   broker they go to the broker's cluster-wide occupancy
//!   ([`pushgate_broker::redis::Occupancy`]), which reports only the transitions that
//!   were the cluster's first subscriber or last, once, on the node that made them; only
//!   apps whose webhook sends either event are tracked there, so other apps cost Redis
//!   nothing. The `PusherEvents::channel_occupied`/`channel_vacated` calls of the
//!   WebSocket side (a subscriber count read after the subscribe, which two subscribers
//!   on different shards can both miss) are ignored here so that nothing is sent twice.

use pushgate_broker::Broker;
use pushgate_hub::ChannelObserver;

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
    /// the Pusher channels (`pusher/<app>/<name>`) of apps with webhooks: as they come
    /// with the in-process broker, through the broker's cluster-wide occupancy with
    /// Redis. Call before the first connection; `false` if the hub already had an
    /// observer.
    pub fn observe(&self, broker: &Broker) -> bool {
        let apps = self.occupancy_apps();
        if apps.is_empty() {
            return true;
        }
        let hooks = self.clone();
        let report = move |app: &str, name: &str, occupied: bool| {
            if occupied {
                hooks.channel_occupied(app, name);
            } else {
                hooks.channel_vacated(app, name);
            }
        };
        let observer: ChannelObserver =
            match broker.occupancy(apps.clone(), Box::new(report.clone())) {
                None => Box::new(move |pg, occupied| {
                    if let Some((app, name)) = channel::from_pushgate(pg) {
                        report(&app, &name, occupied);
                    }
                }),
                Some(cluster) => Box::new(move |pg, occupied| {
                    match channel::from_pushgate(pg) {
                        Some((app, name)) if apps.contains(&app) => {
                            cluster.changed(&app, &name, occupied)
                        }
                        _ => {} // a pushgate.v1 channel, or an app that sends neither event
                    }
                }),
            };
        broker.hub().interest().observe_channels(observer).is_ok()
    }
}
