//! The `[[presence]]` rules (which channels keep presence) and `presence_ttl_ms`
//! (how long a node's entries stay in Redis without a refresh).

use pushgate_hub::PresenceRule;
use serde::{Deserialize, Serialize};

use super::error::invalid;
use super::{Config, ConfigError};

/// One `[[presence]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceConfig {
    /// An exact channel name, or a prefix followed by `*`.
    pub channels: String,
}

impl Config {
    /// The hub's form of the rules, with one for each Pusher app's presence channels
    /// (`pusher/<app>/presence-*`, docs/pusher.md).
    pub(super) fn presence_rules(&self) -> Vec<PresenceRule> {
        let pusher = self
            .pusher_apps
            .iter()
            .map(|a| pushgate_pusher::channel::presence_pattern(&a.id));
        self.presence
            .iter()
            .map(|p| p.channels.clone())
            .chain(pusher)
            .map(|channels| PresenceRule { channels })
            .collect()
    }

    /// Each rule, and the TTL's range.
    pub(super) fn validate_presence(&self) -> Result<(), ConfigError> {
        for rule in self.presence_rules() {
            rule.validate()
                .map_err(|e| invalid("presence", e.to_string()))?;
        }
        if !(3_000..=3_600_000).contains(&self.presence_ttl_ms) {
            return Err(invalid("presence_ttl_ms", "3000 (3 s) to 3600000 (1 hour)"));
        }
        Ok(())
    }
}
