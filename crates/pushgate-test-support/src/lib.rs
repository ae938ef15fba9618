//! What pushgate's tests share, so each helper exists once:
//!
//! - [`frame`]: masked client frames, as a WebSocket client sends them;
//! - [`metrics`]: values read from a `/metrics` exposition;
//! - [`http`]: a minimal blocking HTTP/1.1 client for the internal API (the
//!   gateway's own code is not used to test it);
//! - [`process`]: a child process killed when dropped, and a gateway process started
//!   on port 0 that reports the addresses it bound.
//!
//! Standard library only, so that even the protocol crate's tests can use it.

pub mod frame;
pub mod http;
pub mod metrics;
pub mod process;

pub use frame::client_frame;
pub use http::http;
pub use process::{Killed, Served};
