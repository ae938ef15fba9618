//! Wiring of one pushgate node: configuration, the shard threads, the WebSocket edge,
//! the internal HTTP API, telemetry and shutdown.
//!
//! - [`config`]: the one configuration struct and its validation.
//! - [`config_source`]: the configuration assembled from file, environment and flags,
//!   so that an error names where the bad value came from.
//! - [`gateway`]: [`Gateway::start`] and [`Gateway::shutdown`].
//! - [`telemetry`]: the Prometheus recorder; `metric_help`: every metric's `# HELP`;
//!   `process_metrics`: CPU, memory and descriptors of the process.

pub mod config;
mod config_kinds;
pub mod config_source;
pub mod gateway;
mod metric_help;
mod process_metrics;
pub mod telemetry;

pub use config::{AuthMode, BrokerKind, Config, ConfigError, LogFormat};
pub use config_source::{Origin, Sources};
pub use gateway::{Gateway, StartError};
