//! The Pusher Channels protocol beside `pushgate.v1` (docs/pusher.md).
//!
//! - `app`: the `[[pusher_apps]]` a node serves (id, key, secret, limits, webhooks).
//!   No app configured: the Pusher surface is off.
//! - [`api`]: the HTTP API signed like Pusher's (`/apps/{id}/events`, ...), mounted on
//!   the internal HTTP port.

pub mod api;
mod app;

pub use api::PusherApi;
pub use app::{AppError, PusherApp, PusherApps};
