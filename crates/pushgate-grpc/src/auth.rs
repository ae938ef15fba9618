//! The optional bearer token: a static secret from the config, checked on every
//! call of the `Pushgate` service (health and reflection stay open, so that probes
//! and grpcurl's `list` work without it).
//!
//! The check wraps the service ([`Authenticated`]) rather than being a tonic
//! interceptor, because an interceptor does not see the call's path: a refused call is
//! counted in `pushgate_grpc_requests_total` under its method like any other.

use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;

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
        match &self.expected {
            None => Ok(()),
            Some(expected) => pushgate_ingress::check_bearer(header, expected)
                .map_err(|e| Status::unauthenticated(e.to_string())),
        }
    }
}

/// A service whose every call must pass the [`BearerAuth`] check.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: BearerAuth,
}

impl<S> Authenticated<S> {
    pub fn new(inner: S, auth: BearerAuth) -> Self {
        Authenticated { inner, auth }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let header = req.headers().get("authorization").map(|v| v.as_bytes());
        match self.auth.check(header) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(status) => {
                let method = crate::service::method_label(req.uri().path());
                crate::service::count_call(method, status.code());
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
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
