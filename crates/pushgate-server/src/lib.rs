//! Wiring of one pushgate node: configuration, the shard threads, the WebSocket edge,
//! the internal HTTP API, telemetry and shutdown.
//!
//! - [`config`]: the one configuration struct and its validation.
//! - [`config_source`]: the configuration assembled from file, environment and flags,
//!   so that an error names where the bad value came from.
//! - [`gateway`]: [`Gateway::start`] and [`Gateway::shutdown`].
//! - [`telemetry`]: the Prometheus recorder and process metrics.

pub mod config;
pub mod config_source;
pub mod gateway;
pub mod telemetry;

pub use config::{Config, ConfigError};
pub use config_source::{Origin, Sources};
pub use gateway::{Gateway, StartError};
