//! pushgate's internal gRPC ingress (`pushgate.v1`), for publishers and operators.
//!
//! It listens on its own port (default `127.0.0.1:50051`), next to the HTTP API, and
//! serves the `Pushgate` service, the standard `grpc.health.v1` health service and
//! server reflection. The API is described in `docs/grpc.md`; the schema is
//! `proto/pushgate/v1/pushgate.proto`, compiled by `build.rs` with protox (no `protoc`).
//!
//! - [`pb`]: the generated messages, client and server.
//! - [`server`]: [`GrpcServer`]: starts the services on a listener, drains, stops.
//! - [`service`]: the unary calls (publish, disconnect, subscribe, stats, presence).
//! - [`stream`]: `PublishStream`: ordered acks, a bounded window, back-pressure.
//! - [`idempotency`]: the window that de-duplicates retried publications.
//! - [`auth`]: the optional bearer token, checked on every `Pushgate` call.
//! - `incoming`: the port's connections, through the internal ports' connection limit
//!   and idle timeout.
//! - [`error`]: what can be refused, and the gRPC status each refusal gets.

pub mod auth;
pub mod config;
pub mod error;
pub mod idempotency;
mod incoming;
pub mod server;
pub mod service;
pub mod stream;

pub use auth::{Authenticated, BearerAuth};
pub use config::GrpcConfig;
pub use error::IngressError;
pub use server::GrpcServer;
pub use service::PushgateService;

/// The generated `pushgate.v1` messages, client (`pushgate_client`) and server
/// (`pushgate_server`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("pushgate.v1");

    /// The encoded descriptor set of `pushgate.v1`, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/pushgate_v1_descriptor.bin"));
}

/// The full name of the service, as health checks and reflection name it.
pub const SERVICE_NAME: &str = "pushgate.v1.Pushgate";
