//! A static bearer token, as the internal ports check it (`http_token`, `grpc_token`):
//! `Authorization: Bearer <token>`, compared in constant time.

/// Why a request's bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    #[error("missing authorization: send \"authorization: Bearer <token>\"")]
    Missing,
    #[error("invalid bearer token")]
    Wrong,
}

/// Checks an `authorization` header value against `expected` (not empty).
pub fn check_bearer(header: Option<&[u8]>, expected: &[u8]) -> Result<(), BearerError> {
    let value = header.ok_or(BearerError::Missing)?;
    let given = value
        .strip_prefix(b"Bearer ")
        .or_else(|| value.strip_prefix(b"bearer "))
        .unwrap_or(b"");
    // subtle's comparison has no early exit, so the time taken does not reveal how many
    // leading bytes of a guess were right; only the length can differ.
    if bool::from(subtle::ConstantTimeEq::ct_eq(given, expected)) {
        Ok(())
    } else {
        Err(BearerError::Wrong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_passes() {
        assert_eq!(check_bearer(Some(b"Bearer s3cret"), b"s3cret"), Ok(()));
        assert_eq!(check_bearer(Some(b"bearer s3cret"), b"s3cret"), Ok(()));
        assert_eq!(check_bearer(None, b"s3cret"), Err(BearerError::Missing));
        for bad in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cret2",
            b"s3cret",
            b"Basic s3cret",
        ] {
            assert_eq!(check_bearer(Some(bad), b"s3cret"), Err(BearerError::Wrong));
        }
    }
}
