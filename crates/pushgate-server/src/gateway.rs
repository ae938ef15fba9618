//! Starting and stopping one gateway node: shard threads, listeners, ingress.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use pushgate_broker::Broker;
use pushgate_edge::{Anonymous, Authenticator, JwtAuthenticator};
use pushgate_grpc::GrpcServer;
use pushgate_hub::{CloseReason, Hub};
use pushgate_ingress::Mount;
use pushgate_ingress::{serve_http, HttpState};
use pushgate_pusher::webhook::{Backoff, WebhookError};
use pushgate_pusher::{Pusher, PusherApi, Webhooks};
use thiserror::Error;
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{AuthMode, BrokerKind, Config};
use crate::telemetry;

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start shard thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot set up connection tokens: {0}")]
    Jwt(#[from] pushgate_edge::JwtSetupError),
    #[error("cannot start the gRPC ingress: {0}")]
    Grpc(#[from] pushgate_grpc::server::ServeError),
    #[error("cannot set up the broker: {0}")]
    Broker(#[from] pushgate_broker::DeploymentError),
    #[error("cannot set up Pusher webhooks: {0}")]
    Webhooks(#[from] WebhookError),
}

/// Longest wait for gRPC calls in flight when the node stops.
const GRPC_STOP_GRACE: Duration = Duration::from_secs(2);

/// A running node. Dropping it without [`Gateway::shutdown`] leaves its threads running.
pub struct Gateway {
    ws_addr: SocketAddr,
    http_addr: SocketAddr,
    /// The gRPC ingress; NOT_SERVING as soon as shutdown begins.
    grpc: GrpcServer,
    hub: Hub,
    broker: Broker,
    /// The Pusher surface, when `[[pusher_apps]]` are configured.
    pusher: Option<Arc<Pusher>>,
    ready: Arc<AtomicBool>,
    /// Stops the WebSocket accept loop (first step of shutdown).
    stop_accepting: CancellationToken,
    /// Stops the internal HTTP API and the shard threads (last step).
    stop_all: CancellationToken,
    /// The WebSocket connections' tasks: shutdown waits until the last has ended.
    connections: TaskTracker,
    threads: Vec<JoinHandle<()>>,
    drain_window: Duration,
    grace: Duration,
}

impl Gateway {
    /// Starts a node: must be called inside a tokio runtime, which will run the
    /// accept loop and the internal HTTP API; each shard gets a thread of its own.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        config.validate()?;
        for warning in config.exposure_warnings() {
            tracing::warn!("{warning}");
        }
        let auth = authenticator(&config)?;
        let metrics = telemetry::install();
        let hub = Hub::new(config.hub());
        let stop_accepting = CancellationToken::new();
        let stop_all = CancellationToken::new();

        let ws = listen(config.ws_addr)?;
        let http = listen(config.http_addr)?;
        let grpc = listen(config.grpc_addr)?;
        let (ws_addr, http_addr) = (local(&ws, config.ws_addr)?, local(&http, config.http_addr)?);

        let (threads, runtimes) = start_shards(&hub, config.pin_shards, stop_all.clone())?;
        if let Some(p) = hub.presence() {
            // Ends with the process: it only sends events while the hub lives.
            tokio::spawn(p.clone().run(hub.clone()));
        }
        let broker = match config.broker {
            BrokerKind::Redis => Broker::redis(hub.clone(), config.redis())?,
            BrokerKind::Memory => Broker::in_process(hub.clone(), config.idempotency_window()),
        };

        let apps = config.pusher_apps()?;
        let pusher = (!apps.is_empty()).then(|| Pusher::new(apps, broker.clone()));
        // Pusher webhooks: one sender task per app with a webhook_url, fed by the
        // WebSocket side and the hub's channel observer (docs/pusher.md, "Webhooks").
        let mut mounts: Vec<Arc<dyn Mount>> = Vec::new();
        if let Some(p) = &pusher {
            let hooks = Webhooks::start(p.apps(), Backoff::default(), &stop_all)?;
            hooks.observe(&broker);
            p.set_events(Arc::new(hooks));
            // The Pusher HTTP API on the internal port (`/apps/...`).
            let api = PusherApi::new(
                Arc::new(p.apps().clone()),
                p.clone(),
                config.max_payload_bytes,
            );
            mounts.push(Arc::new(api));
        }

        // The Pusher protocol on the WebSocket listener (`/app/{key}`), on the same hub.
        let surface = pusher.as_ref().map(|p| p.install());
        let connections = TaskTracker::new();
        tokio::spawn(pushgate_edge::serve(
            ws,
            hub.clone(),
            config.edge(),
            auth,
            runtimes,
            connections.clone(),
            stop_accepting.clone(),
            surface,
        ));

        let ready = Arc::new(AtomicBool::new(true));
        let state = Arc::new(HttpState {
            broker: broker.clone(),
            ready: ready.clone(),
            render_metrics: Box::new(move || {
                let _ = metrics;
                telemetry::render()
            }),
            limits: config.http_limits(),
            token: config.http_token.clone(),
            mounts,
        });
        tokio::spawn(serve_http(http, state, stop_all.clone()));
        tokio::spawn(telemetry::upkeep(stop_all.clone()));
        let grpc = GrpcServer::start(grpc, broker.clone(), config.grpc()).await?;
        let grpc_addr = grpc.local_addr();
        tracing::info!(%ws_addr, %http_addr, %grpc_addr, shards = hub.shards().len(), node = %config.node_id, broker = broker.kind(), "pushgate is serving");
        Ok(Gateway {
            ws_addr,
            http_addr,
            grpc,
            hub,
            broker,
            pusher,
            ready,
            stop_accepting,
            stop_all,
            connections,
            threads,
            drain_window: Duration::from_millis(config.drain_window_ms),
            grace: Duration::from_millis(config.shutdown_grace_ms),
        })
    }

    /// The address WebSocket clients connect to.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// The address of the internal HTTP API.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The address of the internal gRPC API.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr()
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The Pusher surface (`None` without `[[pusher_apps]]`).
    pub fn pusher(&self) -> Option<&Arc<Pusher>> {
        self.pusher.as_ref()
    }

    /// Stops the node: not ready at once, stop accepting, close every client with 1001
    /// (after flushing what is queued for it) spread over the drain window, wait for
    /// them up to the grace period, stop.
    pub async fn shutdown(self) {
        let deadline = tokio::time::Instant::now() + self.grace;
        self.ready.store(false, Ordering::Release);
        self.grpc.set_not_serving().await;
        self.stop_accepting.cancel();
        self.hub
            .drain(self.drain_window, CloseReason::Shutdown)
            .await;
        // No new connection task after the accept loop stopped: wait for the last one
        // (it ends once its close handshake is done), up to the grace period.
        self.connections.close();
        let _ = tokio::time::timeout_at(deadline, self.connections.wait()).await;
        self.grpc.stop(GRPC_STOP_GRACE).await;
        self.broker.shutdown().await;
        self.stop_all.cancel();
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        tracing::info!("pushgate stopped");
    }
}

/// The authenticator `auth_mode` asks for. Anonymous mode is announced loudly.
fn authenticator(config: &Config) -> Result<Arc<dyn Authenticator>, StartError> {
    if config.auth_mode == AuthMode::Jwt {
        let jwt = JwtAuthenticator::new(config.jwt()?)?;
        tracing::info!(
            issuer = %config.jwt_issuer,
            audience = %config.jwt_audience,
            "WebSocket clients need a connection token (auth_mode = \"jwt\")"
        );
        return Ok(Arc::new(jwt));
    }
    let user_header =
        Some(config.trusted_user_header.to_ascii_lowercase()).filter(|h| !h.is_empty());
    match &user_header {
        Some(h) => tracing::warn!(
            header = %h,
            "auth_mode = \"anonymous\": WebSocket clients are NOT authenticated; the user id is \
             taken from the {h} header as-is, so the proxy in front MUST strip it from client \
             requests. Use auth_mode = \"jwt\" otherwise (docs/security.md)"
        ),
        None => tracing::warn!(
            "auth_mode = \"anonymous\": WebSocket clients are NOT authenticated; anyone who can \
             reach ws_addr may connect and subscribe to any channel. For development only: set \
             auth_mode = \"jwt\" in production (docs/security.md)"
        ),
    }
    Ok(Arc::new(Anonymous { user_header }))
}

/// Binds with a deep accept backlog: connection storms after a restart are normal.
fn listen(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let bind = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(4096)
    };
    bind().map_err(|source| StartError::Bind { addr, source })
}

fn local(l: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    l.local_addr()
        .map_err(|source| StartError::Bind { addr, source })
}

/// Starts one thread per shard, each with a current-thread runtime that runs the
/// shard's fan-out loop and the tasks of the connections it owns.
fn start_shards(
    hub: &Hub,
    pin: bool,
    stop: CancellationToken,
) -> Result<(Vec<JoinHandle<()>>, Vec<Handle>), StartError> {
    let cores = if pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut threads = Vec::new();
    let mut runtimes = Vec::new();
    for shard in hub.shards() {
        let shard = shard.clone();
        let stop = stop.clone();
        let core = (!cores.is_empty()).then(|| cores[shard.id() % cores.len()]);
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::Builder::new()
            .name(format!("pushgate-shard-{}", shard.id()))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime builds");
                let _ = tx.send(rt.handle().clone());
                rt.block_on(async {
                    tokio::select! {
                        _ = shard.run() => {}
                        _ = stop.cancelled() => {}
                    }
                });
            })
            .map_err(StartError::Thread)?;
        threads.push(t);
        runtimes.push(rx.recv().expect("shard thread sends its runtime handle"));
    }
    Ok((threads, runtimes))
}
