//! The Redis broker: nodes joined through Redis 7 sharded pub/sub.
//!
//! Two connections per node (per master on a Redis Cluster: [`deployment`] says which
//! Redis, [`topology`] where each key lives), each kind driven by one task:
//!
//! - the **publisher** ([`publisher`]) takes requests from a queue in batches, writes
//!   a batch of commands at once and reads their replies (one round trip per batch,
//!   not per publication), then delivers each publication's local part to this
//!   node's shards in order. A publication to a history channel is one script
//!   ([`script`]) that takes the channel's next offset, appends it to the channel's
//!   stream and publishes it, atomically. It also reports this node's counts for
//!   cluster stats, reads streams for the subscriber, and probes Redis.
//! - the **subscriber** ([`subscriber`]) `SSUBSCRIBE`s to the broadcast channel, this
//!   node's own channel (connection-targeted publications) and, through the hub's
//!   [`Interest`](pushgate_hub::Interest), exactly the channels and users that have
//!   connections here ([`links`]: its connections; [`deliver`]: what it does with a
//!   message). Each message is decoded and handed to the shards, where its frame is
//!   encoded once. History channels are kept in step with Redis by [`follow`]: synced
//!   when followed, gaps filled after a reconnect. A channel no longer wanted stays
//!   followed for `unfollow_linger` ([`linger`]).
//!
//! Channel counts of every node (the Pusher API's channel lists) are a scatter/gather
//! over the same two connections ([`census`]): a query on the broadcast key, answers
//! on the asker's node key.
//!
//! A third connection (per master on a Redis Cluster, routed by [`router`] like the
//! publisher's), [`presence`], keeps this node's presence members in Redis and
//! answers cluster-wide presence reads and "online" lookups. Another, started only
//! on request ([`RedisBroker::occupancy`]), keeps which nodes have each channel of a
//! group, for cluster-wide `channel_occupied` / `channel_vacated` (`occupancy.rs`).
//!
//! When either connection is down, or Redis does not answer within the timeout, the
//! broker is down: publications are refused with [`BrokerError::Unavailable`] (never
//! accepted and lost), clients stay connected, and both tasks reconnect with backoff;
//! the subscriber re-subscribes to everything wanted at that moment.

mod census;
pub mod conn;
mod deliver;
pub mod deployment;
mod follow;
mod linger;
mod links;
mod occupancy;
mod occupancy_ops;
mod presence;
mod presence_ops;
mod presence_scripts;
#[cfg(test)]
mod presence_scripts_redis;
mod publisher;
mod request;
pub mod resp;
mod router;
mod script;
mod subscriber;
pub mod topology;
mod upkeep;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pushgate_hub::Hub;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::control::{NodeStats, Subject};
use crate::error::{BrokerError, Unavailable};
use crate::local::local_part;
use crate::message::{Message, Target};
use crate::wire::{self, Keys};
use conn::Dialer;
use deployment::{Deployment, DeploymentError, Mode};
pub use occupancy::{Occupancy, OccupancyReport};
pub(crate) use request::PublishOutcome;
use request::{BusCmd, Count, ErrorCounters, Publish, Request};

/// Publications queued for the publisher task; a full queue makes publishers wait.
const QUEUE: usize = 4096;

/// Settings of the Redis broker.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// The seeds: `redis[s]://[[user]:password@]host[:port][,host[:port]...]`
    /// ([`deployment`]).
    pub url: String,
    /// Standalone, cluster or sentinel (with the master's name).
    pub mode: Mode,
    /// The CA that signed Redis's certificate (`rediss://`).
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// The sentinels' own login (Sentinel mode; [`deployment`] says why apart).
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    /// Prefix of every Redis channel and key, so that deployments can share a Redis.
    pub prefix: String,
    /// How long Redis may take to answer (a round trip, a probe, a connection)
    /// before the broker counts as down and an unanswered publication as uncertain.
    pub timeout: Duration,
    /// How long an idempotency key is remembered in Redis.
    pub idempotency_window: Duration,
    /// How long this node's presence entries live in Redis unless refreshed (every
    /// third of it).
    pub presence_ttl: Duration,
    /// How long a channel key no longer wanted here stays followed before it is
    /// unfollowed (zero: at once), so that a client that comes back soon costs no
    /// `SUNSUBSCRIBE`/`SSUBSCRIBE` pair ([`linger`]; user keys never linger).
    pub unfollow_linger: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            mode: Mode::Standalone,
            tls_ca_file: None,
            sentinel_username: None,
            sentinel_password: None,
            prefix: "pushgate".into(),
            timeout: Duration::from_secs(2),
            idempotency_window: Duration::from_secs(60),
            presence_ttl: Duration::from_secs(30),
            unfollow_linger: Duration::ZERO,
        }
    }
}

/// What the tasks need of the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) timeout: Duration,
    pub(crate) idempotency_window: Duration,
    pub(crate) unfollow_linger: Duration,
}

impl Settings {
    /// How often an idle connection checks that Redis still answers: twice per
    /// timeout, so that a stall is noticed within about one timeout; at most every
    /// second (what a probe costs Redis is negligible).
    pub(crate) fn probe_every(&self) -> Duration {
        (self.timeout / 2).clamp(Duration::from_millis(20), Duration::from_secs(1))
    }
}

/// The Redis broker of one node.
pub struct RedisBroker {
    hub: Hub,
    keys: Keys,
    state: Arc<State>,
    queue: mpsc::Sender<Request>,
    stop: CancellationToken,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    presence: Arc<presence::RedisPresence>,
    census: Arc<census::Desk>,
    /// For tasks started on request ([`RedisBroker::occupancy`]).
    dialer: Dialer,
    entry_ttl: Duration,
}

impl RedisBroker {
    pub(crate) fn start(
        hub: Hub,
        config: RedisConfig,
    ) -> Result<Arc<RedisBroker>, DeploymentError> {
        let deployment =
            Deployment::parse(&config.url, config.mode, config.tls_ca_file.as_deref())?
                .with_sentinel_login(
                    config.sentinel_username.as_deref(),
                    config.sentinel_password.as_deref(),
                )?;
        let dialer = Dialer {
            deployment: Arc::new(deployment),
            timeout: config.timeout,
        };
        let keys = Keys::new(&config.prefix);
        let settings = Settings {
            timeout: config.timeout,
            idempotency_window: config.idempotency_window,
            unfollow_linger: config.unfollow_linger,
        };
        let state = Arc::new(State::new());
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::channel(QUEUE);
        let publisher = tokio::spawn(publisher::run(
            hub.clone(),
            dialer.clone(),
            keys.clone(),
            settings,
            state.clone(),
            rx,
            stop.clone(),
        ));
        let (presence, presence_task) = presence::start(
            &hub,
            dialer.clone(),
            keys.clone(),
            config.timeout,
            config.presence_ttl,
            stop.clone(),
        );
        let census = census::Desk::new(hub.clone(), keys.clone(), tx.clone(), config.timeout);
        let subscriber = tokio::spawn(subscriber::run(
            hub.clone(),
            dialer.clone(),
            keys.clone(),
            settings,
            state.clone(),
            tx.clone(),
            census.clone(),
            stop.clone(),
        ));
        Ok(Arc::new(RedisBroker {
            hub,
            keys,
            state,
            queue: tx,
            stop,
            tasks: parking_lot::Mutex::new(vec![publisher, subscriber, presence_task]),
            presence,
            census,
            dialer,
            entry_ttl: config.presence_ttl,
        }))
    }

    /// Starts cluster-wide channel occupancy (`occupancy.rs`): a task with its own
    /// connections that reports each cluster-wide transition of a channel this node
    /// makes to `report`; `groups` are swept for the entries of dead nodes. Entries
    /// live `presence_ttl` unless refreshed. Stops with the broker.
    pub fn occupancy(&self, groups: Vec<String>, report: OccupancyReport) -> Occupancy {
        let (occupancy, task) = occupancy::start(
            self.dialer.clone(),
            self.keys.clone(),
            self.hub.config().node_id.clone(),
            self.entry_ttl,
            groups,
            report,
            self.stop.clone(),
        );
        self.tasks.lock().push(task);
        occupancy
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
    ///
    /// What this node delivers itself once Redis took the publication, and what it
    /// delivers from the bus like every other node: a history channel's publications
    /// always come from the bus (in Redis's order, which is offset order), and so does
    /// everything of a publication with an idempotency key (so that a retry answered
    /// from the key still reached this node's clients when the first attempt did).
    pub(crate) async fn submit(
        &self,
        m: Message,
        source: &'static str,
    ) -> Result<oneshot::Receiver<PublishOutcome>, BrokerError> {
        if !self.is_up() {
            let e = BrokerError::from(self.state.reason());
            self.state.errors.count(&e);
            return Err(e);
        }
        let node = self.hub.config().node_id.as_str();
        let key = m.idempotency_key.clone();
        let echo = key.is_some();
        let body = |conns: Option<&[pushgate_protocol::ConnId]>| {
            wire::encode(node, m.exclude.as_ref(), conns, &m.payload, echo)
        };
        let cmd = |bus: String, body: Bytes| match &key {
            None => BusCmd::Plain { key: bus, body },
            Some(k) => BusCmd::Keyed {
                key: bus,
                body,
                idempotency: k.clone(),
            },
        };
        let interest = self.hub.interest();
        let (cmds, count, local_target) = match &m.target {
            Target::All => (
                vec![cmd(self.keys.all(), body(None))],
                Count::Max,
                Some(Target::All),
            ),
            Target::Channels(chs) => {
                let history = self.hub.history();
                let (mut cmds, mut plain, mut here) = (Vec::new(), Vec::new(), false);
                let plain_body = body(None);
                let head = wire::positioned_head(node, m.exclude.as_ref(), &m.payload);
                for ch in distinct(chs) {
                    match history.and_then(|h| h.rules().for_channel(ch)) {
                        Some(rule) => cmds.push(BusCmd::History {
                            channel: ch.to_owned(),
                            head: head.clone(),
                            payload: m.payload.clone(),
                            rule: rule.clone(),
                            idempotency: key.clone(),
                        }),
                        None => {
                            cmds.push(cmd(self.keys.channel(ch), plain_body.clone()));
                            here |= interest.wants(&pushgate_hub::Key::Channel(ch.into()));
                            plain.push(ch.to_owned());
                        }
                    }
                }
                let local = here.then_some(Target::Channels(plain));
                (cmds, Count::Max, local)
            }
            Target::Users(users) => {
                let b = body(None);
                let cmds = distinct(users)
                    .map(|u| cmd(self.keys.user(u), b.clone()))
                    .collect();
                let here = users
                    .iter()
                    .any(|u| interest.wants(&pushgate_hub::Key::User(u.as_str().into())));
                (cmds, Count::Max, here.then(|| m.target.clone()))
            }
            Target::Conns(conns) => {
                let mut by_node: Vec<(&str, Vec<pushgate_protocol::ConnId>)> = Vec::new();
                // With a key, this node's connections are reached through its own
                // bus channel too.
                for c in conns.iter().filter(|c| echo || c.node != node) {
                    match by_node.iter_mut().find(|(n, _)| *n == c.node) {
                        Some((_, ids)) => ids.push(c.id),
                        None => by_node.push((&c.node, vec![c.id])),
                    }
                }
                let cmds = by_node
                    .iter()
                    .map(|(n, ids)| cmd(self.keys.node(n), body(Some(ids))))
                    .collect();
                let here = !echo && conns.iter().any(|c| c.node == node);
                (
                    cmds,
                    Count::Sum(u32::from(here)),
                    here.then(|| m.target.clone()),
                )
            }
        };
        // Nothing targeted here (no local subscriber of these channels or users): this
        // node does not hand it to its shards at all.
        let local = match local_target.filter(|_| !echo) {
            Some(target) => local_part(
                &self.hub,
                Message {
                    target,
                    payload: m.payload,
                    exclude: m.exclude,
                    idempotency_key: None,
                },
            ),
            None => None,
        };
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Request::Publish(Publish {
                cmds,
                count,
                local,
                source,
                reply,
            }))
            .await
            .map_err(BrokerError::stopped)?;
        Ok(rx)
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
            .send(Request::Publish(Publish {
                cmds: vec![BusCmd::Plain { key, body }],
                count: Count::Sum(0),
                local: None,
                source: "control",
                reply,
            }))
            .await
            .map_err(BrokerError::stopped)?;
        let taken = rx.await.map_err(BrokerError::stopped)??;
        Ok(taken.nodes)
    }

    /// A page of a history channel, read from Redis (any node answers for every
    /// channel); `None` if the channel has no history rule.
    pub(crate) async fn history(
        &self,
        channel: &str,
        since: Option<u64>,
        limit: usize,
    ) -> Result<Option<pushgate_hub::HistoryPage>, BrokerError> {
        let rule = self
            .hub
            .history()
            .and_then(|h| h.rules().for_channel(channel));
        let Some(rule) = rule.cloned() else {
            return Ok(None);
        };
        if !self.is_up() {
            return Err(self.state.reason().into());
        }
        let (reply, rx) = oneshot::channel();
        let limit = limit.min(pushgate_hub::history::MAX_READ);
        self.queue
            .send(Request::Read {
                channel: channel.to_owned(),
                since,
                limit,
                rule,
                reply,
            })
            .await
            .map_err(BrokerError::stopped)?;
        rx.await.map_err(BrokerError::stopped)?.map(Some)
    }

    /// Whether each user has a connection on some node (`PUBSUB SHARDNUMSUB` of the
    /// users' bus keys).
    pub(crate) async fn online(
        &self,
        users: Vec<String>,
    ) -> Result<Vec<bool>, pushgate_hub::PresenceError> {
        self.presence.online(users).await
    }

    /// Every node's counts for `q`, summed ([`census`]).
    pub(crate) async fn census(
        &self,
        q: crate::census::CensusQuery,
    ) -> Result<crate::census::Census, crate::census::CensusError> {
        if !self.is_up() {
            let e = crate::census::CensusError::from(BrokerError::from(self.state.reason()));
            self.census.count(&Err(e.clone()));
            return Err(e);
        }
        self.census.ask(q).await
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

/// Distinct names, in the order given.
fn distinct(names: &[String]) -> impl Iterator<Item = &str> {
    names
        .iter()
        .enumerate()
        .filter(|(i, n)| !names[..*i].contains(n))
        .map(|(_, n)| n.as_str())
}

/// Whether each connection is up, and why the broker is down if it is.
pub(crate) struct State {
    publisher: AtomicBool,
    subscriber: AtomicBool,
    up: watch::Sender<bool>,
    last_error: parking_lot::Mutex<Unavailable>,
    gauge: metrics::Gauge,
    /// Publications refused or left uncertain, counted wherever that is decided.
    pub(crate) errors: ErrorCounters,
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
            errors: ErrorCounters::new(),
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
