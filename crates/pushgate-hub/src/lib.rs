//! The sharded hub: who is connected, who follows what, and the fan-out loop.
//!
//! It knows no sockets. The WebSocket edge registers each connection with one shard
//! and receives a [`ConnHandle`]; the handle's writer side drains the connection's
//! outbound queue. Ingresses call [`Hub::publish`].
//!
//! - [`hub`]: the [`Hub`], which hashes connections across shards and hands each
//!   publication to every shard once.
//! - [`shard`]: one shard's state (a slab of connections, channel and user indexes)
//!   behind its own lock, driven by one worker thread (optionally pinned to a core).
//! - [`fanout`]: the shard's command loop and the per-recipient loop.
//! - `compressed`: a publication's permessage-deflate frame, compressed once, lazily.
//! - [`outbound`]: a connection's bounded outbound queue and the slow-consumer policy.
//! - [`heartbeat`]: the shard's ping sweep and reaping of silent connections.
//! - [`handle`]: what the edge holds for one connection.
//! - [`interest`]: which channels and users have local connections, for a cluster
//!   broker that subscribes to them on a shared bus only while they do.
//! - [`history`]: channel history, positions and recovery on subscribe.
//! - [`presence`]: who is subscribed to presence channels, `join` / `leave` events.
//! - [`sse`]: a publication's Server-Sent Events bytes, encoded once for every SSE
//!   recipient.
//! - [`dialect`]: a second client protocol (Pusher) on the same shards: its frames of
//!   a publication, built once per frame of the job.
//! - [`grant`]: what a token allows a connection (channel patterns, expiry), kept in
//!   a side table so that anonymous connections pay nothing for it.

mod close;
mod compressed;
mod config;
pub mod dialect;
mod fanout;
mod grant;
mod handle;
mod heartbeat;
pub mod history;
mod hub;
mod interest;
mod metrics;
mod outbound;
mod per_frame;
pub mod presence;
mod publication;
mod shard;
mod sse;

pub use close::CloseReason;
pub use compressed::CompressionConfig;
pub use config::{HubConfig, SlowPolicy};
pub use dialect::Dialect;
pub use grant::{Grant, PatternError, Permissions, RefreshError};
pub use handle::{ConnHandle, Outgoing, SubscribeError};
pub use history::{
    At, History, HistoryPage, HistoryRule, Snapshot, SnapshotEntry, SubscribeRequest, Subscribed,
    Synced,
};
pub use hub::{Hub, Stats, Submitted};
pub use interest::{ChannelObserver, Interest, Key, Released};
pub use metrics::ShardMetrics;
pub use presence::{Presence, PresenceError, PresenceRule};
pub use publication::{
    check_width, Publication, PublishError, PublishReport, Target, MAX_PUBLICATION_CHANNELS,
    MAX_PUBLICATION_CONNS, MAX_PUBLICATION_USERS,
};
pub use shard::{AdminReport, Shard, RESERVED_CONNS};

#[cfg(test)]
mod tests;
