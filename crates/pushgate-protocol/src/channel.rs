//! Channel names: what a client may subscribe to and a publisher may target.

use thiserror::Error;

/// The longest channel name accepted, in bytes.
pub const MAX_CHANNEL_LEN: usize = 128;

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChannelError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is longer than {MAX_CHANNEL_LEN} bytes")]
    TooLong,
    #[error("channel name contains {0:?}; allowed: letters, digits and _ - . : @ / =")]
    BadChar(char),
}

/// Checks a channel name: 1-128 bytes of ASCII letters, digits and `_-.:@/=`.
///
/// The set is small on purpose: names travel in URLs, JSON and Redis keys unescaped.
pub fn validate_channel(name: &str) -> Result<(), ChannelError> {
    if name.is_empty() {
        return Err(ChannelError::Empty);
    }
    if name.len() > MAX_CHANNEL_LEN {
        return Err(ChannelError::TooLong);
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.:@/=".contains(*c)))
    {
        Some(c) => Err(ChannelError::BadChar(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_names() {
        for ok in ["news", "user:42", "chat/room-1", "a.b_c=d@e"] {
            assert_eq!(validate_channel(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(validate_channel(""), Err(ChannelError::Empty));
        assert_eq!(
            validate_channel(&"x".repeat(129)),
            Err(ChannelError::TooLong)
        );
        assert_eq!(validate_channel("a b"), Err(ChannelError::BadChar(' ')));
        assert_eq!(validate_channel("é"), Err(ChannelError::BadChar('é')));
    }
}
