//! The `[[history]]` rules: which channels keep history, how much and how long.

use std::time::Duration;

use pushgate_hub::HistoryRule;
use serde::{Deserialize, Serialize};

use super::error::invalid;
use super::{Config, ConfigError};

/// One `[[history]]` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// An exact channel name, or a prefix followed by `*`.
    pub channels: String,
    /// Publications kept per channel.
    pub size: usize,
    /// How long each publication is kept, in milliseconds.
    pub ttl_ms: u64,
}

impl Config {
    /// The hub's form of the rules.
    pub(super) fn history_rules(&self) -> Vec<HistoryRule> {
        self.history
            .iter()
            .map(|h| HistoryRule {
                channels: h.channels.clone(),
                size: h.size,
                ttl: Duration::from_millis(h.ttl_ms),
            })
            .collect()
    }

    /// Each rule, and the bytes all history may hold.
    pub(super) fn validate_history(&self) -> Result<(), ConfigError> {
        for rule in self.history_rules() {
            rule.validate()
                .map_err(|e| invalid("history", e.to_string()))?;
        }
        if self.history_max_bytes < 1 << 20 {
            return Err(invalid("history_max_bytes", "at least 1048576 (1 MiB)"));
        }
        Ok(())
    }
}
