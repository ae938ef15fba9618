//! Where publications enter pushgate.
//!
//! - [`http`]: the internal HTTP API: `POST /publish`, `/metrics`, `/livez`, `/readyz`.
//! - [`history`]: `GET /history`, a page of a history channel (docs/history.md).
//!
//! Ingresses validate, turn a request into a [`pushgate_hub::Publication`] and call
//! [`pushgate_hub::Hub::publish`]; they never touch connections.

pub mod history;
pub mod http;

pub use http::{serve_http, HttpState};
