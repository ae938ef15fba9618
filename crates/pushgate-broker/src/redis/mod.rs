//! The Redis broker: nodes joined through Redis 7 sharded pub/sub.
//!
//! Two connections per node, each driven by one task:
//!
//! - the **publisher** ([`publisher`]) takes publications from a queue in batches,
//!   writes a batch of `SPUBLISH` commands at once and reads their replies (one round
//!   trip per batch, not per publication), then delivers each publication to this
//!   node's shards in order. It also reports this node's counts for cluster stats.
//! - the **subscriber** ([`subscriber`]) `SSUBSCRIBE`s to the broadcast channel, this
//!   node's own channel (connection-targeted publications) and, through the hub's
//!   [`Interest`](pushgate_hub::Interest), exactly the channels and users that have
//!   connections here. Each message is decoded and handed to the shards, where its
//!   frame is encoded once.
//!
//! When either connection is down the broker is down: publications are refused with
//! [`BrokerError::Unavailable`] (never accepted and lost), clients stay connected,
//! and both tasks reconnect with backoff; the subscriber re-subscribes to everything
//! wanted at that moment.

pub mod conn;
mod publisher;
pub mod resp;
mod subscriber;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pushgate_hub::Hub;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::control::{NodeStats, Subject};
use crate::error::{BrokerError, Unavailable};
use crate::local::local_part;
use crate::message::{Message, Target};
use crate::wire::{self, Keys};
use conn::{Endpoint, UrlError};
use publisher::{Count, PublishOutcome, Request};

/// Publications queued for the publisher task; a full queue makes publishers wait.
const QUEUE: usize = 4096;

/// Settings of the Redis broker.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[[user]:password@]host[:port]`.
    pub url: String,
    /// Prefix of every Redis channel and key, so that deployments can share a Redis.
    pub prefix: String,
}

/// The Redis broker of one node.
pub struct RedisBroker {
    hub: Hub,
    keys: Keys,
    state: Arc<State>,
    queue: mpsc::Sender<Request>,
    stop: CancellationToken,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl RedisBroker {
    pub(crate) fn start(hub: Hub, config: RedisConfig) -> Result<Arc<RedisBroker>, UrlError> {
        let endpoint = Endpoint::parse(&config.url)?;
        let keys = Keys::new(&config.prefix);
        let state = Arc::new(State::new());
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::channel(QUEUE);
        let publisher = tokio::spawn(publisher::run(
            hub.clone(),
            endpoint.clone(),
            keys.clone(),
            state.clone(),
            rx,
            stop.clone(),
        ));
        let subscriber = tokio::spawn(subscriber::run(
            hub.clone(),
            endpoint,
            keys.clone(),
            state.clone(),
            stop.clone(),
        ));
        Ok(Arc::new(RedisBroker {
            hub,
            keys,
            state,
            queue: tx,
            stop,
            tasks: parking_lot::Mutex::new(vec![publisher, subscriber]),
        }))
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn is_up(&self) -> bool {
        *self.state.up.borrow()
    }

    pub fn watch_up(&self) -> watch::Receiver<bool> {
        self.state.up.subscribe()
    }

    /// Encodes a validated publication for the bus and queues it for the publisher.
    pub(crate) async fn submit(
        &self,
        m: Message,
        source: &'static str,
    ) -> Result<oneshot::Receiver<PublishOutcome>, BrokerError> {
        if !self.is_up() {
            return Err(self.state.reason().into());
        }
        let node = self.hub.config().node_id.as_str();
        let body = |conns: Option<&[pushgate_protocol::ConnId]>| {
            wire::encode(node, m.exclude.as_ref(), conns, &m.payload)
        };
        let (bus, count, here) = match &m.target {
            Target::All => (vec![(self.keys.all(), body(None))], Count::Max, true),
            Target::Channels(chs) => self.keyed(chs, body(None), |c| {
                (self.keys.channel(c), pushgate_hub::Key::Channel(c.into()))
            }),
            Target::Users(users) => self.keyed(users, body(None), |u| {
                (self.keys.user(u), pushgate_hub::Key::User(u.into()))
            }),
            Target::Conns(conns) => {
                let mut by_node: Vec<(&str, Vec<pushgate_protocol::ConnId>)> = Vec::new();
                for c in conns.iter().filter(|c| c.node != node) {
                    match by_node.iter_mut().find(|(n, _)| *n == c.node) {
                        Some((_, ids)) => ids.push(c.id),
                        None => by_node.push((&c.node, vec![c.id])),
                    }
                }
                let bus = by_node
                    .iter()
                    .map(|(n, ids)| (self.keys.node(n), body(Some(ids))))
                    .collect();
                let here = conns.iter().any(|c| c.node == node);
                (bus, Count::Sum(u32::from(here)), here)
            }
        };
        // Nothing targeted here (no local subscriber of these channels or users): this
        // node does not hand it to its shards at all.
        let local = if here { local_part(&self.hub, m) } else { None };
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Request::Publish {
                bus,
                count,
                local,
                source,
                reply,
            })
            .await
            .map_err(BrokerError::stopped)?;
        Ok(rx)
    }

    /// The bus messages of a publication to channels or users (one per key, sharing
    /// one body; `names` are distinct), and whether any of them has a connection here.
    fn keyed(
        &self,
        names: &[String],
        body: bytes::Bytes,
        key: impl Fn(&str) -> (String, pushgate_hub::Key),
    ) -> (Vec<(String, bytes::Bytes)>, Count, bool) {
        let mut bus: Vec<(String, bytes::Bytes)> = Vec::with_capacity(names.len());
        let mut here = false;
        for name in names {
            let (bus_key, interest_key) = key(name);
            here = here || self.hub.interest().wants(&interest_key);
            // Names are distinct (`Broker::submit` de-duplicated them), so are keys.
            bus.push((bus_key, body.clone()));
        }
        (bus, Count::Max, here)
    }

    /// Puts an operator's call on the bus (the user's key, or the connection's node
    /// key; nothing for a connection of this node) and returns the `SPUBLISH` reply.
    pub(crate) async fn control(
        &self,
        who: &Subject,
        c: &wire::Control,
    ) -> Result<u32, BrokerError> {
        if !self.is_up() {
            return Err(self.state.reason().into());
        }
        let node = self.hub.config().node_id.as_str();
        let (key, body) = match who {
            Subject::User(u) => (self.keys.user(u), wire::encode_control(node, None, c)),
            Subject::Conn(nc) if nc.node == node => return Ok(0),
            Subject::Conn(nc) => (
                self.keys.node(&nc.node),
                wire::encode_control(node, Some(std::slice::from_ref(&nc.id)), c),
            ),
        };
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Request::Publish {
                bus: vec![(key, body)],
                count: Count::Sum(0),
                local: None,
                source: "control",
                reply,
            })
            .await
            .map_err(BrokerError::stopped)?;
        let (nodes, _) = rx.await.map_err(BrokerError::stopped)??;
        Ok(nodes)
    }

    pub(crate) async fn cluster_stats(&self) -> Result<Vec<NodeStats>, BrokerError> {
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Request::Stats { reply })
            .await
            .map_err(BrokerError::stopped)?;
        rx.await.map_err(BrokerError::stopped)?
    }

    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

/// Whether each connection is up, and why the broker is down if it is.
pub(crate) struct State {
    publisher: AtomicBool,
    subscriber: AtomicBool,
    up: watch::Sender<bool>,
    last_error: parking_lot::Mutex<Unavailable>,
    gauge: metrics::Gauge,
}

impl State {
    fn new() -> State {
        let gauge = metrics::gauge!("pushgate_broker_up");
        gauge.set(0.0);
        State {
            publisher: AtomicBool::new(false),
            subscriber: AtomicBool::new(false),
            up: watch::channel(false).0,
            last_error: parking_lot::Mutex::new(Unavailable::Connecting),
            gauge,
        }
    }

    pub(crate) fn set_publisher(&self, up: bool, error: Option<Unavailable>) {
        self.publisher.store(up, Ordering::Release);
        self.update(error);
    }

    pub(crate) fn set_subscriber(&self, up: bool, error: Option<Unavailable>) {
        self.subscriber.store(up, Ordering::Release);
        self.update(error);
    }

    fn update(&self, error: Option<Unavailable>) {
        if let Some(e) = error {
            *self.last_error.lock() = e;
        }
        let up = self.publisher.load(Ordering::Acquire) && self.subscriber.load(Ordering::Acquire);
        self.gauge.set(if up { 1.0 } else { 0.0 });
        self.up.send_if_modified(|v| std::mem::replace(v, up) != up);
    }

    fn reason(&self) -> Unavailable {
        self.last_error.lock().clone()
    }
}

/// Reconnect delays: 100 ms doubling to 2 s, with jitter so nodes do not reconnect in
/// step after a Redis restart.
pub(crate) struct Backoff {
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() as u64 | 1);
        Backoff {
            next: Duration::from_millis(100),
            seed,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.next = Duration::from_millis(100);
    }

    pub(crate) fn next(&mut self) -> Duration {
        // xorshift: jitter in [75 %, 125 %).
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = 0.75 + (self.seed % 1000) as f64 / 2000.0;
        let d = self.next.mul_f64(jitter);
        self.next = (self.next * 2).min(Duration::from_secs(2));
        d
    }
}
