//! The `[[pusher_apps]]`: the Pusher surface's apps (docs/pusher.md).

use pushgate_pusher::PusherApps;

use super::error::invalid;
use super::{Config, ConfigError};

impl Config {
    /// The apps, checked (unique ids and keys, nothing empty, known webhook events, a
    /// `webhook_url` this node can send to).
    pub fn pusher_apps(&self) -> Result<PusherApps, ConfigError> {
        let apps = PusherApps::new(self.pusher_apps.clone())
            .map_err(|e| invalid("pusher_apps", e.to_string()))?;
        for app in apps.iter().filter(|a| !a.webhook_url.is_empty()) {
            pushgate_pusher::webhook::parse_url(app)
                .map_err(|e| invalid("pusher_apps", e.to_string()))?;
        }
        Ok(apps)
    }
}
