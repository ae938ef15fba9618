//! The broker seam: how a publication reaches every node that has a target for it.
//!
//! - [`broker`]: the [`Broker`] ingresses publish through. `InProcess` (the default,
//!   one node, no external service) hands publications to the hub; `Redis` joins
//!   nodes through Redis 7 sharded pub/sub.
//! - [`wire`]: the bus channel names and the compact body of a publication on the bus.
//! - [`redis`]: the Redis broker: a publisher connection that pipelines publications
//!   in batches, and a subscriber connection that follows only the channels and users
//!   this node has connections for, re-subscribing after a reconnect.
//!
//! docs/cluster.md describes the topology and the failure behaviour.

pub mod broker;
pub mod redis;
pub mod wire;

pub use broker::{
    Broker, BrokerError, ControlReport, Delivery, Message, NodeStats, Pending, Subject, Target,
};
pub use redis::conn::UrlError;
pub use redis::RedisConfig;
pub use wire::{Control, NodeConn};
