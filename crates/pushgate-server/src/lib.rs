//! Wiring of one pushgate node: configuration, the shard threads, the WebSocket edge,
//! the internal HTTP API, telemetry and shutdown.
//!
//! - [`config`]: the one configuration struct and its validation.
//! - [`gateway`]: [`Gateway::start`] and [`Gateway::shutdown`].
//! - [`telemetry`]: the metrics recorder, its upkeep, and process metrics.
//! - `recorder` and `histogram`: the recorder itself, with histograms kept as counts
//!   per bucket instead of samples.

pub mod config;
pub mod gateway;
mod histogram;
mod recorder;
pub mod telemetry;

pub use config::{Config, ConfigError};
pub use gateway::{Gateway, StartError};
