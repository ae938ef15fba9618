//! Serving the gRPC ingress: the `Pushgate` service behind the bearer-token check,
//! the standard health service and server reflection (v1 and v1alpha), on one
//! listener of their own.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pushgate_broker::Broker;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::auth::{Authenticated, BearerAuth};
use crate::config::GrpcConfig;
use crate::incoming::Incoming;
use crate::pb;
use crate::service::PushgateService;
use crate::SERVICE_NAME;

/// Largest request accepted by the transport. Payloads over the hub's limit but under
/// this one are refused by the service with a message that names the limit.
const MIN_MAX_MESSAGE: usize = 4 << 20;

/// A running gRPC ingress.
pub struct GrpcServer {
    addr: SocketAddr,
    health: HealthReporter,
    /// Set when the node starts draining: NOT_SERVING from then on, whatever the broker.
    draining: Arc<AtomicBool>,
    /// Stops the server and ends open streams.
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// Why the gRPC ingress could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot read the gRPC listener's address: {0}")]
    Addr(#[from] std::io::Error),
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

impl GrpcServer {
    /// Serves on `listener` (already bound) until [`GrpcServer::stop`]. Health follows
    /// the broker: NOT_SERVING while it is down.
    pub async fn start(
        listener: TcpListener,
        broker: Broker,
        config: GrpcConfig,
    ) -> Result<GrpcServer, ServeError> {
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let max_message = MIN_MAX_MESSAGE.max(broker.hub().config().max_payload * 2 + 64 * 1024);
        let auth = BearerAuth::new(&config.token);
        let gate = pushgate_ingress::Gate::new("grpc", config.max_connections, config.idle_timeout);
        let transport = config.clone();
        let mut broker_up = broker.watch_up();
        let service = pb::pushgate_server::PushgateServer::new(PushgateService::new(
            broker,
            config,
            stop.clone(),
        ))
        .max_decoding_message_size(max_message);

        let (health, health_service) = tonic_health::server::health_reporter();
        let draining = Arc::new(AtomicBool::new(false));
        let up = *broker_up.borrow_and_update();
        set_status(&health, up).await;
        {
            let (health, draining, stop) = (health.clone(), draining.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        r = broker_up.changed() => if r.is_err() { return },
                    }
                    let up = *broker_up.borrow_and_update();
                    if !draining.load(Ordering::Acquire) {
                        set_status(&health, up).await;
                    }
                }
            });
        }
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let incoming = Incoming::new(listener, gate);
        let router = tonic::transport::Server::builder()
            .timeout(transport.request_timeout)
            .http2_keepalive_interval(transport.keepalive_interval)
            .http2_keepalive_timeout(Some(transport.keepalive_timeout))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(Authenticated::new(service, auth));
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await
            {
                tracing::error!(error = %e, "gRPC ingress failed");
            }
        });
        Ok(GrpcServer {
            addr,
            health,
            draining,
            stop,
            task,
        })
    }

    /// The address publishers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reports NOT_SERVING (for the server as a whole and for `pushgate.v1.Pushgate`),
    /// so that probes and load balancers stop sending here. Calls are still served.
    pub async fn set_not_serving(&self) {
        self.draining.store(true, Ordering::Release);
        set_status(&self.health, false).await;
    }

    /// Ends open streams (each acks what it read, then ends with UNAVAILABLE), stops
    /// accepting and waits for calls in flight, at most `grace`.
    pub async fn stop(self, grace: Duration) {
        self.set_not_serving().await;
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!("gRPC ingress did not stop within {grace:?}; aborting it");
            task.abort();
        }
    }
}

/// Sets the server's and `pushgate.v1.Pushgate`'s health status.
async fn set_status(health: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in ["", SERVICE_NAME] {
        health.set_service_status(name, status).await;
    }
}
