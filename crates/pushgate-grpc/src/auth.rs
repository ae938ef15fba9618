//! The optional bearer token: a static secret from the config, checked on every
//! call of the `Pushgate` service (health and reflection stay open, so that probes
//! and grpcurl's `list` work without it).

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Checks `authorization: Bearer <token>` when a token is configured.
#[derive(Clone)]
pub struct BearerAuth {
    /// `None`: every call is let through.
    expected: Option<Arc<[u8]>>,
}

impl BearerAuth {
    /// An empty token disables the check.
    pub fn new(token: &str) -> Self {
        BearerAuth {
            expected: (!token.is_empty()).then(|| Arc::from(token.as_bytes())),
        }
    }

    fn check(&self, header: Option<&[u8]>) -> Result<(), Status> {
        let Some(expected) = &self.expected else {
            return Ok(());
        };
        let Some(value) = header else {
            return Err(Status::unauthenticated(
                "missing authorization: send \"authorization: Bearer <token>\"",
            ));
        };
        let given = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
            .unwrap_or(b"");
        // Without an early exit (subtle), so the time taken does not reveal how many
        // leading bytes of a guess were right; only the length can differ.
        if bool::from(given.ct_eq(expected)) {
            Ok(())
        } else {
            Err(Status::unauthenticated("invalid bearer token"))
        }
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let header = req.metadata().get("authorization").map(|v| v.as_bytes());
        self.check(header)?;
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn no_token_configured_lets_everything_through() {
        let a = BearerAuth::new("");
        assert!(a.check(None).is_ok());
        assert!(a.check(Some(b"Bearer whatever")).is_ok());
    }

    #[test]
    fn a_missing_or_wrong_token_is_unauthenticated() {
        let a = BearerAuth::new("s3cret");
        assert!(a.check(Some(b"Bearer s3cret")).is_ok());
        assert!(a.check(Some(b"bearer s3cret")).is_ok());
        for bad in [
            None,
            Some(&b"Bearer s3cre"[..]),
            Some(b"Bearer s3cret2"),
            Some(b"s3cret"),
            Some(b"Basic s3cret"),
        ] {
            let e = a.check(bad).unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated, "{bad:?}");
        }
    }
}
