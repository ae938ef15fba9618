//! Wiring of one pushgate node: configuration, the shard threads, the WebSocket edge,
//! the internal HTTP API, telemetry and shutdown.
//!
//! - [`config`]: the one configuration struct and its validation.
//! - [`gateway`]: [`Gateway::start`] and [`Gateway::shutdown`].
//! - [`telemetry`]: the Prometheus recorder and process metrics.

pub mod config;
pub mod gateway;
pub mod telemetry;

pub use config::{Config, ConfigError};
pub use gateway::{Gateway, StartError};
