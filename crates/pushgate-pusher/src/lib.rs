//! The Pusher Channels protocol beside `pushgate.v1` (docs/pusher.md).
//!
//! - `app`: the `[[pusher_apps]]` a node serves (id, key, secret, limits, webhooks).
//!   No app configured: the Pusher surface is off.

mod app;

pub use app::{AppError, PusherApp, PusherApps};
