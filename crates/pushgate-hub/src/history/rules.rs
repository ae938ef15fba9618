//! Which channels keep history: rules from the config, each an exact channel name or a
//! `prefix*` pattern, with how many publications and for how long. The first rule that
//! matches a channel applies.

use std::time::Duration;

use pushgate_protocol::validate_channel;
use thiserror::Error;

/// Most publications one rule may keep per channel.
pub const MAX_SIZE: usize = 1_000_000;

/// One `[[history]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRule {
    /// An exact channel name, or a prefix followed by `*` (`chat:*`; `*` alone matches
    /// every channel).
    pub channels: String,
    /// Publications kept per channel.
    pub size: usize,
    /// How long each publication is kept.
    pub ttl: Duration,
}

/// A rule the config cannot use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    #[error("channels {0:?}: a pattern is an exact channel name or a prefix followed by one `*` at the end")]
    BadPattern(String),
    #[error("channels {0:?}: size must be 1 to {MAX_SIZE}")]
    BadSize(String),
    #[error("channels {0:?}: ttl_ms must be at least 1")]
    BadTtl(String),
}

impl HistoryRule {
    /// Checks the pattern, size and ttl.
    pub fn validate(&self) -> Result<(), RuleError> {
        let p = &self.channels;
        if !pattern_is_valid(p) {
            return Err(RuleError::BadPattern(p.clone()));
        }
        if self.size == 0 || self.size > MAX_SIZE {
            return Err(RuleError::BadSize(p.clone()));
        }
        if self.ttl.is_zero() {
            return Err(RuleError::BadTtl(p.clone()));
        }
        Ok(())
    }

    /// Whether this rule applies to `channel`.
    pub fn matches(&self, channel: &str) -> bool {
        pattern_matches(&self.channels, channel)
    }
}

/// Whether a rule's `channels` is usable: an exact channel name, or a prefix followed
/// by one `*` at the end (`*` alone: every channel). Shared by every kind of channel
/// rule (`[[history]]`, `[[presence]]`).
pub fn pattern_is_valid(p: &str) -> bool {
    match p.strip_suffix('*') {
        Some(prefix) if prefix.contains('*') => false,
        // A prefix is valid when some channel can start with it.
        Some("") => true,
        Some(prefix) => validate_channel(prefix).is_ok(),
        None => validate_channel(p).is_ok(),
    }
}

/// Whether the rule pattern `p` (valid, [`pattern_is_valid`]) applies to `channel`.
pub fn pattern_matches(p: &str, channel: &str) -> bool {
    match p.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => channel == p,
    }
}

/// The rules of a node, in config order.
#[derive(Debug, Clone, Default)]
pub struct Rules(Vec<HistoryRule>);

impl Rules {
    pub fn new(rules: Vec<HistoryRule>) -> Rules {
        Rules(rules)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first rule matching `channel`. A linear scan: configs hold a handful of
    /// rules, and it runs once per channel of a publication, never per recipient.
    pub fn for_channel(&self, channel: &str) -> Option<&HistoryRule> {
        self.0.iter().find(|r| r.matches(channel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(channels: &str, size: usize, ttl_ms: u64) -> HistoryRule {
        HistoryRule {
            channels: channels.into(),
            size,
            ttl: Duration::from_millis(ttl_ms),
        }
    }

    #[test]
    fn patterns_are_exact_names_or_prefixes() {
        let rules = Rules::new(vec![
            rule("chat:*", 10, 1),
            rule("prices", 1, 1),
            rule("*", 2, 1),
        ]);
        assert_eq!(rules.for_channel("chat:1").unwrap().size, 10);
        assert_eq!(rules.for_channel("prices").unwrap().size, 1);
        assert_eq!(
            rules.for_channel("prices:eu").unwrap().size,
            2,
            "falls to *"
        );
        assert!(Rules::default().for_channel("chat:1").is_none());
    }

    #[test]
    fn bad_rules_are_refused_with_the_pattern_named() {
        for p in ["", "a*b*", "a b*", "chat:**", "with space"] {
            assert_eq!(
                rule(p, 1, 1).validate(),
                Err(RuleError::BadPattern(p.into())),
                "{p:?}"
            );
        }
        assert!(matches!(
            rule("a", 0, 1).validate(),
            Err(RuleError::BadSize(_))
        ));
        assert!(matches!(
            rule("a", MAX_SIZE + 1, 1).validate(),
            Err(RuleError::BadSize(_))
        ));
        assert!(matches!(
            rule("a*", 1, 0).validate(),
            Err(RuleError::BadTtl(_))
        ));
        assert_eq!(rule("*", 5, 1).validate(), Ok(()));
    }
}
