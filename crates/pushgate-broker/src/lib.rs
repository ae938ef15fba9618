//! The broker seam: how a publication reaches every node that has a target for it.
//!
//! - [`broker`]: the [`Broker`] ingresses publish through. `InProcess` (the default,
//!   one node, no external service) hands publications to the hub; `Redis` joins
//!   nodes through Redis 7 sharded pub/sub.
//! - [`message`]: what a publisher hands it ([`Message`], [`Target`]); [`delivery`]:
//!   what it answers ([`Delivery`]); [`control`]: operators' calls ([`Subject`],
//!   [`ControlReport`], [`NodeStats`]); [`error`]: why it refuses ([`BrokerError`]).
//! - [`census`]: cluster-wide channel counts ([`Census`]): every node's subscribers
//!   of some channels, summed (over the bus with Redis).
//! - `local`: this node's share of a publication or a call, used by both brokers.
//! - `idempotency`: the in-process broker's window of idempotency keys (with Redis,
//!   the window is kept in Redis).
//! - [`wire`]: the bus channel names and the compact body of a publication on the bus.
//! - [`redis`]: the Redis broker: a publisher connection that pipelines publications
//!   in batches, and a subscriber connection that follows only the channels and users
//!   this node has connections for, re-subscribing after a reconnect; presence kept in
//!   Redis; and, on request, cluster-wide channel occupancy ([`redis::Occupancy`]) for
//!   the Pusher surface's `channel_occupied` / `channel_vacated` webhooks.
//!
//! Dependencies point one way: `broker` -> `redis` -> `local` -> the types.
//! docs/cluster.md describes the topology and the failure behaviour.

pub mod broker;
pub mod census;
pub mod control;
pub mod delivery;
pub mod error;
mod idempotency;
mod local;
pub mod message;
pub mod redis;
pub mod wire;

pub use broker::{Broker, Pending};
pub use census::{Census, CensusError, CensusQuery};
pub use control::{ControlReport, NodeStats, Subject};
pub use delivery::{Accepted, Delivery};
pub use error::{BrokerError, Unavailable, Uncertain};
pub use message::{Message, Target};
pub use redis::deployment::{DeploymentError, Mode as RedisMode};
pub use redis::RedisConfig;
pub use wire::{Control, NodeConn};
