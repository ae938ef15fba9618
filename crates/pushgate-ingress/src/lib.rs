//! Where publications enter pushgate.
//!
//! - [`http`]: the internal HTTP API: `POST /publish`, `/metrics`, `/livez`, `/readyz`.
//!
//! Ingresses validate, turn a request into a [`pushgate_hub::Publication`] and call
//! [`pushgate_hub::Hub::publish`]; they never touch connections.

pub mod http;

pub use http::{serve_http, HttpState};
