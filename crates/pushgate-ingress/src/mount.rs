//! Another API served on the internal HTTP port beside pushgate's own: the Pusher HTTP
//! API (`/apps/...`, docs/pusher.md) is one. The port reads the body (within the
//! mount's size limit and the port's body timeout) and hands the request over whole, so
//! a mount never touches a socket. Paths a mount serves carry their own authentication
//! (Pusher's signed query string): the port's bearer token is not asked of them.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use hyper::http::request::Parts;

use crate::http::Resp;

/// What a mount's handler returns.
pub type MountFuture<'a> = Pin<Box<dyn Future<Output = Resp> + Send + 'a>>;

pub trait Mount: Send + Sync + 'static {
    /// Whether this mount answers `path`.
    fn serves(&self, path: &str) -> bool;
    /// Largest body it takes; beyond, the port answers 413 without calling it.
    fn max_body(&self) -> usize;
    /// The `path` label of its requests in `pushgate_http_requests_total`.
    fn label(&self) -> &'static str;
    /// Answers one request.
    fn call<'a>(&'a self, head: &'a Parts, body: Bytes) -> MountFuture<'a>;
}
