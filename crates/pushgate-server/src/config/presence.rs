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
    /// The hub's form of the rules.
    pub(super) fn presence_rules(&self) -> Vec<PresenceRule> {
        self.presence
            .iter()
            .map(|p| PresenceRule {
                channels: p.channels.clone(),
            })
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
