//! The Pusher Channels protocol beside `pushgate.v1` (docs/pusher.md).
//!
//! - `app`: the `[[pusher_apps]]` a node serves (id, key, secret, limits, webhooks).
//!   No app configured: the Pusher surface is off.
//! - [`api`]: the HTTP API signed like Pusher's (`/apps/{id}/events`, ...), mounted on
//!   the internal HTTP port.
//! - [`webhook`]: webhooks like Pusher's, batched, signed, retried, never waited for.

pub mod api;
mod app;
pub mod webhook;

pub use api::PusherApi;
pub use app::{AppError, PusherApp, PusherApps};
pub use webhook::{WebhookEvent, Webhooks};
