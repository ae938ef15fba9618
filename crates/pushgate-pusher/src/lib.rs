//! The Pusher Channels protocol beside `pushgate.v1` (docs/pusher.md).
//!
//! **The API the HTTP side (pusher-api: `api/`, `webhook/`) uses is [`Pusher`]**:
//! `publish` (trigger an event, optionally excluding a `socket_id`), `channels`,
//! `subscription_count`, `presence_members` / `presence_users`, `terminate_user`, the
//! signatures in [`auth`], and [`PusherEvents`] for webhooks. Keep it stable.
//!
//! - `app`: the `[[pusher_apps]]` a node serves (id, key, secret, limits, webhooks).
//!   No app configured: the Pusher surface is off.
//! - [`channel`]: channel kinds and the mapping of Pusher channels and users to
//!   pushgate names (`pusher/<app>/<name>`).
//! - [`auth`]: channel and sign-in signatures (HMAC-SHA256, constant-time checks).
//! - [`socket_id`]: Pusher socket ids (`<node number>.<connection>`).
//! - [`wire`]: Pusher frames in and out, and the envelope of an event in the hub.
//! - `service`: [`Pusher`], the node's surface (publish, lookups, terminate).
//! - `counts`: its channel lists and subscription counts, cluster-wide (the
//!   broker's census).
//! - `dialect`: the hub's [`Dialect`](pushgate_hub::Dialect): publications and
//!   presence events as Pusher frames, encoded once per channel.
//! - [`ws`]: the WebSocket side (`/app/{key}`), a [`Surface`](pushgate_edge::Surface)
//!   of the edge.
//! - `metrics`: the surface's own counters.
//! - [`api`]: the HTTP API signed like Pusher's (`/apps/{id}/events`, ...), mounted on
//!   the internal HTTP port.
//! - [`webhook`]: webhooks like Pusher's, batched, signed, retried, never waited for.

pub mod api;
mod app;
pub mod auth;
pub mod channel;
mod counts;
mod dialect;
mod metrics;
mod service;
pub mod socket_id;
pub mod webhook;
pub mod wire;
pub mod ws;

pub use api::PusherApi;
pub use app::{AppError, PusherApp, PusherApps};
pub use service::{
    ChannelInfo, Pusher, PusherError, PusherEvents, MAX_TRIGGER_CHANNELS, TERMINATED,
};
pub use socket_id::SocketId;
pub use webhook::{WebhookEvent, Webhooks};
pub use wire::Member;
