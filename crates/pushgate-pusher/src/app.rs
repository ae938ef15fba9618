//! A Pusher app: what `[[pusher_apps]]` holds, and the lookups the surfaces need
//! (by `key` for WebSocket clients, by `id` for the HTTP API).

use serde::{Deserialize, Serialize};

/// One `[[pusher_apps]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PusherApp {
    /// The app id of the HTTP API's paths (`/apps/{id}/events`).
    pub id: String,
    /// The public key clients connect with (`/app/{key}`) and the API signs with.
    pub key: String,
    /// The secret that signs channel auth, API requests and webhooks.
    pub secret: String,
    /// Accept `client-*` events on private and presence channels.
    pub client_events: bool,
    /// Most client events one connection may send per second (beyond: `pusher:error` 4301).
    pub client_events_per_second: u32,
    /// Most open Pusher connections of this app on this node (beyond: 4100). 0: no limit.
    pub max_connections: usize,
    /// Where webhooks are POSTed. Empty: no webhooks.
    pub webhook_url: String,
    /// Which webhook events are sent (`channel_occupied`, `channel_vacated`,
    /// `member_added`, `member_removed`, `client_event`). Empty: all of them.
    pub webhook_events: Vec<String>,
}

impl Default for PusherApp {
    fn default() -> Self {
        Self {
            id: String::new(),
            key: String::new(),
            secret: String::new(),
            client_events: false,
            client_events_per_second: 10,
            max_connections: 0,
            webhook_url: String::new(),
            webhook_events: Vec::new(),
        }
    }
}

/// Why a set of apps cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AppError {
    #[error("app #{index}: `{field}` must not be empty")]
    Empty { index: usize, field: &'static str },
    #[error("app id `{0}` appears twice")]
    DuplicateId(String),
    #[error("app key `{0}` appears twice")]
    DuplicateKey(String),
    #[error("app `{id}`: unknown webhook event `{event}`")]
    UnknownWebhookEvent { id: String, event: String },
}

/// The webhook events an app may ask for.
pub const WEBHOOK_EVENTS: [&str; 5] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
];

/// The apps of one node, checked: ids and keys unique, none empty.
#[derive(Debug, Clone, Default)]
pub struct PusherApps {
    apps: Vec<PusherApp>,
}

impl PusherApps {
    pub fn new(apps: Vec<PusherApp>) -> Result<Self, AppError> {
        for (index, app) in apps.iter().enumerate() {
            for (field, value) in [("id", &app.id), ("key", &app.key), ("secret", &app.secret)] {
                if value.is_empty() {
                    return Err(AppError::Empty { index, field });
                }
            }
            if apps[..index].iter().any(|a| a.id == app.id) {
                return Err(AppError::DuplicateId(app.id.clone()));
            }
            if apps[..index].iter().any(|a| a.key == app.key) {
                return Err(AppError::DuplicateKey(app.key.clone()));
            }
            if let Some(event) = app
                .webhook_events
                .iter()
                .find(|e| !WEBHOOK_EVENTS.contains(&e.as_str()))
            {
                return Err(AppError::UnknownWebhookEvent {
                    id: app.id.clone(),
                    event: event.clone(),
                });
            }
        }
        Ok(Self { apps })
    }

    /// No app: the Pusher surface is off.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    pub fn by_key(&self, key: &str) -> Option<&PusherApp> {
        self.apps.iter().find(|a| a.key == key)
    }

    pub fn by_id(&self, id: &str) -> Option<&PusherApp> {
        self.apps.iter().find(|a| a.id == id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &PusherApp> {
        self.apps.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, key: &str) -> PusherApp {
        PusherApp {
            id: id.into(),
            key: key.into(),
            secret: "s".into(),
            ..PusherApp::default()
        }
    }

    #[test]
    fn finds_apps_by_key_and_id() {
        let apps = PusherApps::new(vec![app("1", "k1"), app("2", "k2")]).unwrap();
        assert_eq!(apps.by_key("k2").unwrap().id, "2");
        assert_eq!(apps.by_id("1").unwrap().key, "k1");
        assert!(apps.by_key("nope").is_none());
    }

    #[test]
    fn refuses_duplicates_empties_and_unknown_events() {
        assert_eq!(
            PusherApps::new(vec![app("1", "k1"), app("1", "k2")]).unwrap_err(),
            AppError::DuplicateId("1".into())
        );
        assert_eq!(
            PusherApps::new(vec![app("1", "k"), app("2", "k")]).unwrap_err(),
            AppError::DuplicateKey("k".into())
        );
        assert_eq!(
            PusherApps::new(vec![app("", "k")]).unwrap_err(),
            AppError::Empty {
                index: 0,
                field: "id"
            }
        );
        let mut a = app("1", "k");
        a.webhook_events = vec!["channel_exploded".into()];
        assert!(matches!(
            PusherApps::new(vec![a]).unwrap_err(),
            AppError::UnknownWebhookEvent { .. }
        ));
    }
}
