//! What the binary's tests share beyond pushgate-test-support: a free port for a
//! `redis-server` (which cannot be told to pick one: `--port 0` turns TCP off), the
//! cluster tests' Redis and nodes ([`redis`], [`redis_cluster`]), their clients and
//! checks ([`follower`]), a steady publisher ([`steady`]), a test-made CA ([`tls`]) and
//! a Pusher webhook receiver ([`webhook`]).

#![allow(dead_code, unused_imports)] // each test binary uses a part

pub mod follower;
pub mod pusher;
pub mod redis;
pub mod redis_cluster;
pub mod steady;
pub mod tls;
pub mod webhook;

pub use pushgate_test_support::http::{http, http_with, request};
pub use pushgate_test_support::metrics;
pub use pushgate_test_support::process::{Killed, Served, PORT_0};

/// A loopback port that was free a moment ago (for redis-server only: gateways bind
/// port 0 and report theirs).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
