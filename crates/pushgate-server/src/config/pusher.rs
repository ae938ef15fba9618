//! The `[[pusher_apps]]`: the Pusher surface's apps (docs/pusher.md).

use pushgate_pusher::PusherApps;

use super::error::invalid;
use super::{Config, ConfigError};

impl Config {
    /// The apps, checked (unique ids and keys, nothing empty, known webhook events).
    pub fn pusher_apps(&self) -> Result<PusherApps, ConfigError> {
        PusherApps::new(self.pusher_apps.clone()).map_err(|e| invalid("pusher_apps", e.to_string()))
    }
}
