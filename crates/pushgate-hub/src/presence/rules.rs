//! Which channels keep presence: `[[presence]]` rules, each an exact channel name or a
//! `prefix*` pattern, matched exactly as `[[history]]` rules are.

use thiserror::Error;

use crate::history::{pattern_is_valid, pattern_matches};

/// One `[[presence]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRule {
    /// An exact channel name, or a prefix followed by `*` (`room:*`; `*` alone matches
    /// every channel).
    pub channels: String,
}

/// A rule the config cannot use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PresenceRuleError {
    #[error("channels {0:?}: a pattern is an exact channel name or a prefix followed by one `*` at the end")]
    BadPattern(String),
}

impl PresenceRule {
    pub fn validate(&self) -> Result<(), PresenceRuleError> {
        if pattern_is_valid(&self.channels) {
            Ok(())
        } else {
            Err(PresenceRuleError::BadPattern(self.channels.clone()))
        }
    }

    pub fn matches(&self, channel: &str) -> bool {
        pattern_matches(&self.channels, channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_those_of_history_rules() {
        let r = |c: &str| PresenceRule { channels: c.into() };
        assert!(r("room:*").matches("room:1") && !r("room:*").matches("lobby"));
        assert!(r("lobby").matches("lobby") && !r("lobby").matches("lobby:2"));
        for bad in ["", "a*b*", "with space", "x**"] {
            assert_eq!(
                r(bad).validate(),
                Err(PresenceRuleError::BadPattern(bad.into()))
            );
        }
        assert_eq!(r("*").validate(), Ok(()));
    }
}
