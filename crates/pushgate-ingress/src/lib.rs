//! Where publications enter pushgate.
//!
//! - [`http`]: the internal HTTP API: `POST /publish`, `/metrics`, `/livez`, `/readyz`.
//! - [`history`]: `GET /history`, a page of a history channel (docs/history.md).
//! - [`presence`]: `GET /presence`, every subscriber of a presence channel
//!   (docs/presence.md).
//! - [`mount`]: another API on the same port (the Pusher HTTP API, docs/pusher.md).
//! - [`bearer`]: the static bearer token of an internal port (`http_token`, `grpc_token`).
//! - [`refusal`]: the classes of a refused publication, each with its HTTP status and
//!   its gRPC code, shared by both ingresses.
//! - [`guard`]: how many connections an internal port (HTTP or gRPC) takes, and how
//!   long one may stay silent.
//!
//! Ingresses validate, turn a request into a [`pushgate_hub::Publication`] and call
//! [`pushgate_hub::Hub::publish`]; they never touch connections.

pub mod bearer;
pub mod guard;
pub mod history;
pub mod http;
pub mod mount;
pub mod presence;
pub mod refusal;

pub use bearer::{check_bearer, BearerError};
pub use guard::{Gate, Guarded};
pub use http::{serve_http, HttpLimits, HttpState, Resp};
pub use mount::{Mount, MountFuture};
pub use refusal::Refusal;
