//! Where publications enter pushgate.
//!
//! - [`http`]: the internal HTTP API: `POST /publish`, `/metrics`, `/livez`, `/readyz`.
//! - [`guard`]: how many connections an internal port (HTTP or gRPC) takes, and how
//!   long one may stay silent.
//!
//! Ingresses validate, turn a request into a [`pushgate_hub::Publication`] and call
//! [`pushgate_hub::Hub::publish`]; they never touch connections.

pub mod guard;
pub mod http;

pub use guard::{Gate, Guarded};
pub use http::{serve_http, HttpLimits, HttpState};
