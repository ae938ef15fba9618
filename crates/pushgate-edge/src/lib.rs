//! pushgate's WebSocket edge: where sockets meet the hub.
//!
//! - [`acceptor`](crate::acceptor): the accept loop, which hands each socket to the thread of
//!   the shard that owns it.
//! - `handshake`: the HTTP/1.1 upgrade, by hand (no per-connection HTTP state survives it).
//! - `auth`: the [`Authenticator`] seam and the [`Anonymous`] default.
//! - `jwt`: the [`JwtAuthenticator`] (HS256, RS256, ES256 connection tokens).
//! - `limits`: connections per node and per user, connection attempts per address.
//! - `connection`: a connection's life: the handshake and the closing phase (short-lived
//!   tasks), and the hand-over to its shard's poller in between.
//! - `poller`: one task per shard serving every open connection of the shard through
//!   one epoll instance; `open`: one open connection and one turn of its work (read
//!   on readiness, write what the shard queued).
//! - `deflate`: permessage-deflate negotiation (no context takeover either way).
//! - `reader`: frames to commands, through a per-thread read buffer, a bounded
//!   amount per wake-up.
//! - `inbound`: frames and bytes per second one connection may send.
//! - `writer`: everything queued goes out in one vectored write.
//! - `refresh`: the tokens of `refresh` commands, verified on threads of their own.
//! - `presence`: the `presence` command, answered once the (cluster-wide) read ends.
//! - `sse`, `sse_stream`, `sse_writer`: Server-Sent Events on the same listener (the
//!   request and its answers; one stream's task; what it writes and its event ids).
//! - `surface`: the [`Surface`] seam, a second protocol (Pusher) on the same listener
//!   and connection machinery.

mod acceptor;
mod auth;
mod connection;
mod deflate;
pub mod handshake;
mod inbound;
mod jwt;
mod limits;
mod open;
mod poller;
mod presence;
mod reader;
mod refresh;
mod sse;
mod sse_stream;
mod sse_writer;
mod surface;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use pushgate_hub::Hub;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::{Anonymous, Authenticator, Identity};
pub use handshake::{Refusal, UpgradeRequest};
pub use inbound::InboundLimits;
pub use jwt::{token_from, JwtAuthenticator, JwtConfig, JwtSetupError, TokenError};
pub use surface::Surface;

use limits::{Admission, LimitMetrics};

/// The edge's settings.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// The path that upgrades to WebSocket.
    pub ws_path: String,
    /// The path of Server-Sent Events streams (`sse.rs`); empty: none.
    pub sse_path: String,
    /// Largest client frame or reassembled message, in bytes (1009 beyond).
    pub max_message: usize,
    /// Time a client has to send its complete upgrade request.
    pub handshake_timeout: Duration,
    /// Time given to flush and exchange close frames when a connection ends.
    pub close_timeout: Duration,
    /// Browser origins allowed to connect (lower case, e.g. `https://app.example.com`);
    /// empty: any. Requests without an `Origin` header (non-browser clients) pass.
    pub allowed_origins: Vec<String>,
    /// Most open connections on this node (503 at the upgrade beyond); 0: no limit.
    pub max_connections: usize,
    /// Most open connections of one user on this node (503 beyond); 0: no limit.
    pub max_connections_per_user: usize,
    /// Connection attempts per second from one address (429 beyond); 0: no limit.
    pub max_connection_rate_per_ip: u32,
    /// Frames and bytes one connection may send per second (1008 beyond).
    pub inbound: InboundLimits,
    /// Negotiate permessage-deflate with clients that offer it (`compression = "on"`).
    pub compression: bool,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            ws_path: "/ws".into(),
            sse_path: "/sse".into(),
            max_message: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(3),
            allowed_origins: Vec::new(),
            max_connections: 0,
            max_connections_per_user: 0,
            max_connection_rate_per_ip: 0,
            inbound: InboundLimits::default(),
            compression: false,
        }
    }
}

/// What every connection task of the edge shares.
pub(crate) struct EdgeShared {
    pub(crate) hub: Hub,
    pub(crate) config: EdgeConfig,
    pub(crate) auth: Arc<dyn Authenticator>,
    /// One runtime per shard, indexed by shard id: a connection runs on its shard's thread.
    pub(crate) runtimes: Vec<Handle>,
    /// The way into each shard's poller (`poller.rs`), indexed by shard id.
    pub(crate) pollers: Vec<Arc<poller::Link>>,
    /// Open connections, per node and per user.
    pub(crate) admission: Admission,
    pub(crate) limit_metrics: LimitMetrics,
    /// Verifies the tokens of `refresh` commands off the shard threads.
    pub(crate) verifier: refresh::Verifier,
    /// Every connection task (and each poller while it has connections), so that
    /// shutdown can wait for the last connection to end.
    pub(crate) tasks: TaskTracker,
    /// The second protocol on this listener (Pusher), if any.
    pub(crate) surface: Option<Arc<dyn Surface>>,
}

impl EdgeShared {
    fn count_refusal(&self, status: u16) {
        metrics::counter!("pushgate_handshake_refused_total", "status" => status.to_string())
            .increment(1);
    }

    /// The first of `channels` that the second protocol guards (`Surface::guarded`).
    pub(crate) fn guarded<'a>(&self, channels: &'a [String]) -> Option<&'a str> {
        let s = self.surface.as_ref()?;
        channels.iter().find(|c| s.guarded(c)).map(String::as_str)
    }

    /// Whether the request's `Origin` (if any) may connect.
    pub(crate) fn origin_allowed(&self, req: &UpgradeRequest) -> bool {
        let allowed = &self.config.allowed_origins;
        match req.header("origin") {
            None => true,
            Some(_) if allowed.is_empty() => true,
            Some(o) => {
                let o = o.trim().trim_end_matches('/');
                allowed.iter().any(|a| a.eq_ignore_ascii_case(o))
            }
        }
    }
}

/// Serves WebSocket clients on `listener` until `stop` is cancelled.
///
/// `runtimes[i]` must be the runtime that drives shard `i` of `hub`. Each connection's
/// task is tracked by `tasks`: once `stop` is cancelled and the tracker closed,
/// `tasks.wait()` returns when the last connection has ended. `surface`: a second
/// protocol served on the same listener (its paths, its connections).
#[allow(clippy::too_many_arguments)] // each is one of the node's parts
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    config: EdgeConfig,
    auth: Arc<dyn Authenticator>,
    runtimes: Vec<Handle>,
    tasks: TaskTracker,
    stop: CancellationToken,
    surface: Option<Arc<dyn Surface>>,
) {
    assert_eq!(runtimes.len(), hub.shards().len(), "one runtime per shard");
    let admission = Admission::new(config.max_connections, config.max_connections_per_user);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    let verifier = refresh::Verifier::start(auth.clone(), hub.clone(), threads);
    let edge = Arc::new(EdgeShared {
        hub,
        config,
        auth,
        verifier,
        pollers: runtimes.iter().map(|_| Arc::default()).collect(),
        runtimes,
        admission,
        limit_metrics: LimitMetrics::new(),
        tasks,
        surface,
    });
    for (shard, (link, rt)) in edge.pollers.iter().zip(&edge.runtimes).enumerate() {
        // Registered with the shard's runtime, whose thread polls it.
        let _entered = rt.enter();
        match poller::Poller::new(shard, link.clone(), edge.clone()) {
            Ok(p) => drop(rt.spawn(p)),
            Err(e) => {
                // Without its poller a shard could not serve a connection: refuse to start.
                tracing::error!(error = %e, "cannot create a shard's poller (epoll)");
                return;
            }
        }
    }
    acceptor::accept_loop(listener, edge, stop).await;
}
