//! User ids: what a token's `sub` or a trusted header names, and a publisher targets.

use thiserror::Error;

/// The longest user id accepted, in bytes.
pub const MAX_USER_LEN: usize = 128;

/// Why a user id was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UserError {
    #[error("user id is empty")]
    Empty,
    #[error("user id is longer than {MAX_USER_LEN} bytes")]
    TooLong,
    #[error("user id contains {0:?}; allowed: letters, digits and _ - . : @ / = | +")]
    BadChar(char),
}

/// Checks a user id: 1-128 bytes of ASCII letters, digits and `_-.:@/=|+`.
///
/// Like channel names, user ids travel in JSON, URLs and Redis keys unescaped; the set
/// adds `|` and `+` to the channel alphabet for identity providers' subjects
/// (`auth0|5f1c...`) and tagged e-mail addresses.
pub fn validate_user(id: &str) -> Result<(), UserError> {
    if id.is_empty() {
        return Err(UserError::Empty);
    }
    if id.len() > MAX_USER_LEN {
        return Err(UserError::TooLong);
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.:@/=|+".contains(*c)))
    {
        Some(c) => Err(UserError::BadChar(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_ids() {
        for ok in [
            "alice",
            "42",
            "auth0|5f1c2d",
            "a.b+tag@example.com",
            "org/7:u=1",
        ] {
            assert_eq!(validate_user(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_ids() {
        assert_eq!(validate_user(""), Err(UserError::Empty));
        assert_eq!(validate_user(&"u".repeat(129)), Err(UserError::TooLong));
        assert_eq!(validate_user("a\0b"), Err(UserError::BadChar('\0')));
        assert_eq!(validate_user("a b"), Err(UserError::BadChar(' ')));
        assert_eq!(validate_user("é"), Err(UserError::BadChar('é')));
    }
}
