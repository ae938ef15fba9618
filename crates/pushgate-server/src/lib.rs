//! Wiring of one pushgate node: configuration, the shard threads, the WebSocket edge,
//! the internal HTTP API, telemetry and shutdown.
//!
//! - [`config`]: the one configuration struct and its validation (`config/`: loading,
//!   validation, history rules, internal ports and tokens in files of their own).
//! - [`config_source`]: the configuration assembled from file, environment and flags,
//!   so that an error names where the bad value came from.
//! - [`gateway`]: [`Gateway::start`] and [`Gateway::shutdown`].
//! - [`telemetry`]: the metrics recorder, its upkeep, and process metrics;
//!   `metric_help`: every metric's `# HELP`; `process_metrics`: CPU, memory and
//!   descriptors of the process.
//! - `recorder` and `histogram`: the recorder itself, with histograms kept as counts
//!   per bucket instead of samples.

pub mod config;
pub mod config_source;
pub mod gateway;
mod histogram;
mod metric_help;
mod process_metrics;
mod recorder;
pub mod telemetry;

pub use config::{AuthMode, BrokerKind, Config, ConfigError, LogFormat};
pub use config_source::{Origin, Sources};
pub use gateway::{Gateway, StartError};
