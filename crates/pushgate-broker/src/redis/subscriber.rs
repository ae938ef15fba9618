//! The subscriber task: one connection in sharded pub/sub mode (on a Redis Cluster,
//! one per master that serves a followed key: [`Links`]).
//!
//! It follows the broadcast channel, this node's own channel, and the channels and
//! users the hub's [`Interest`](pushgate_hub::Interest) says have connections here,
//! reconciling after every change: the keys that became wanted are `SSUBSCRIBE`d,
//! those no longer wanted `SUNSUBSCRIBE`d. After a reconnect it starts from an empty
//! set and subscribes to everything wanted at that moment. The broker counts as up
//! once the first full set of subscriptions is confirmed.
//!
//! It sends a `PING` every half timeout: when the answer does not come within
//! `redis_timeout_ms`, the broker counts as down (readiness goes 503) but the
//! connection is kept, so that nothing Redis still sends it is lost if Redis was only
//! slow; it is dropped and made again if Redis stays silent for [`SILENCE_LIMIT`] (or
//! ten timeouts, if longer). History channels are kept in step by [`Follow`].
//!
//! On a Redis Cluster, losing one master's connection (or an error on it, or a
//! `sunsubscribe` Redis sends when a slot moves) does not end the session: the keys
//! followed there wait in `pending` and are subscribed again, every [`RETRY_EVERY`],
//! where the slot map (read again first) says; their confirmation reads history
//! channels' streams again from the last offset delivered, which fills the gap.

use std::sync::Arc;
use std::time::Duration;

use ahash::{AHashMap, AHashSet};
use bytes::Bytes;
use pushgate_hub::{Hub, Publication, Target};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::{ConnError, Dialer, Stream};
use super::deployment::Mode;
use super::follow::{Follow, Positioned, SOURCE};
use super::request::Request;
use super::resp::{self, Value};
use super::topology::{self, Topology};
use super::{Backoff, Settings, State};
use crate::error::Unavailable;
use crate::local::{apply, Local};
use crate::wire::{self, KeyKind, Keys, What};

/// Keys per `SSUBSCRIBE` command when re-subscribing many at once.
const CHUNK: usize = 512;
/// A subscriber connection on which Redis stays silent this long is made again.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// Values read from the connections and not yet handled; beyond, the readers wait
/// (and Redis buffers).
const EVENTS: usize = 1024;
/// On a Redis Cluster, how often keys whose node failed are tried again.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// On a Redis Cluster, the slot map is read again this often in any case.
const REFRESH_EVERY: Duration = Duration::from_secs(10);

struct Metrics {
    all: metrics::Counter,
    channel: metrics::Counter,
    user: metrics::Counter,
    conn: metrics::Counter,
    control: metrics::Counter,
    echoes: metrics::Counter,
    undecodable: metrics::Counter,
    subscriptions: metrics::Gauge,
    reconnects: metrics::Counter,
}

impl Metrics {
    fn new() -> Metrics {
        let received = |kind: &'static str| metrics::counter!("pushgate_broker_received_total", "target" => kind);
        Metrics {
            all: received("all"),
            channel: received("channel"),
            user: received("user"),
            conn: received("conn"),
            control: received("control"),
            echoes: metrics::counter!("pushgate_broker_echoes_total"),
            undecodable: metrics::counter!("pushgate_broker_undecodable_total"),
            subscriptions: metrics::gauge!("pushgate_broker_subscriptions"),
            reconnects: metrics::counter!("pushgate_broker_reconnects_total", "connection" => "subscriber"),
        }
    }
}

/// What a session needs.
pub(crate) struct Ctx<'a> {
    hub: &'a Hub,
    dialer: &'a Dialer,
    keys: &'a Keys,
    settings: Settings,
    state: &'a State,
    queue: &'a mpsc::Sender<Request>,
    m: &'a Metrics,
}

pub(crate) async fn run(
    hub: Hub,
    dialer: Dialer,
    keys: Keys,
    settings: Settings,
    state: Arc<State>,
    queue: mpsc::Sender<Request>,
    stop: CancellationToken,
) {
    let m = Metrics::new();
    let mut backoff = Backoff::new();
    let mut ever_up = false;
    let ctx = Ctx {
        hub: &hub,
        dialer: &dialer,
        keys: &keys,
        settings,
        state: &state,
        queue: &queue,
        m: &m,
    };
    loop {
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = session(&ctx, &mut ever_up, &mut backoff) => r,
        };
        // Nothing is confirmed without a connection; replies held for channels no
        // longer wanted are sent now, the others when the next connection confirms.
        send_released(&hub, hub.interest().reset());
        let why = match result {
            Ok(()) => return,
            Err(e) => Unavailable::connect(e),
        };
        tracing::warn!(error = %why, "broker subscriber lost redis; reconnecting");
        state.set_subscriber(false, Some(why));
        m.subscriptions.set(0.0);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff.next()) => {}
        }
    }
}

/// What a connection's reader hands the session: its node, its number, and a value
/// or why the connection ended.
type Event = (String, u64, Result<Value, ConnError>);

/// One subscriber connection (one per master on a Redis Cluster).
struct Link {
    id: u64,
    write: WriteHalf<Stream>,
    reader: JoinHandle<()>,
    /// When the oldest unanswered PING was sent.
    unanswered: Option<Instant>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A session's connections and where each key is followed.
struct Links {
    cluster: bool,
    topology: Topology,
    /// The slot map must be read again (a node failed, Redis unsubscribed a key).
    stale: bool,
    links: AHashMap<String, Link>,
    next_id: u64,
    events: mpsc::Sender<Event>,
    /// The node each followed key was subscribed on.
    route: AHashMap<String, String>,
    /// Keys wanted but followed nowhere now (their node failed): subscribed again
    /// once the slot map names a node that answers.
    pending: AHashSet<String>,
}

impl Links {
    /// Opens the connection to `node` (if not open), its reader feeding `events`.
    async fn link(&mut self, dialer: &Dialer, node: &str) -> Result<&mut Link, ConnError> {
        if !self.links.contains_key(node) {
            let mut conn = dialer.open(node).await?;
            if matches!(dialer.deployment.mode, Mode::Sentinel { .. }) {
                topology::check_primary(&mut conn, dialer).await?;
            }
            let (mut read, write) = conn.split();
            self.next_id += 1;
            let id = self.next_id;
            let (events, addr) = (self.events.clone(), node.to_owned());
            let reader = tokio::spawn(async move {
                loop {
                    let r = read.read().await;
                    let end = r.is_err();
                    if events.send((addr.clone(), id, r)).await.is_err() || end {
                        return;
                    }
                }
            });
            let link = Link {
                id,
                write,
                reader,
                unanswered: None,
            };
            self.links.insert(node.to_owned(), link);
        }
        Ok(self.links.get_mut(node).expect("inserted above"))
    }

    /// `SSUBSCRIBE`s keys on the nodes that serve them. On a single primary a failure
    /// ends the session; on a cluster the keys of a node that cannot be reached wait
    /// in `pending`.
    async fn subscribe(&mut self, dialer: &Dialer, keys: Vec<String>) -> Result<(), ConnError> {
        let cluster = self.cluster;
        for (node, keys) in self.by_node(keys) {
            let Some(node) = node else {
                self.pending.extend(keys);
                continue;
            };
            let sent = match self.link(dialer, &node).await {
                Ok(l) => send_grouped(&mut l.write, "SSUBSCRIBE", &keys, cluster).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(()) => {
                    for k in keys {
                        self.pending.remove(&k);
                        self.route.insert(k, node.clone());
                    }
                }
                Err(e) if !self.cluster => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, %node, "broker subscriber: a redis cluster master cannot be reached");
                    self.lose(&node);
                    self.pending.extend(keys);
                }
            }
        }
        Ok(())
    }

    /// `SUNSUBSCRIBE`s keys where they were subscribed.
    async fn unsubscribe(&mut self, keys: &[String]) -> Result<(), ConnError> {
        let mut by_node: Vec<(String, Vec<String>)> = Vec::new();
        for k in keys {
            self.pending.remove(k);
            let Some(node) = self.route.remove(k) else {
                continue;
            };
            match by_node.iter_mut().find(|(n, _)| *n == node) {
                Some((_, v)) => v.push(k.clone()),
                None => by_node.push((node, vec![k.clone()])),
            }
        }
        for (node, keys) in by_node {
            if let Some(l) = self.links.get_mut(&node) {
                if let Err(e) =
                    send_grouped(&mut l.write, "SUNSUBSCRIBE", &keys, self.cluster).await
                {
                    if !self.cluster {
                        return Err(e);
                    }
                    self.lose(&node);
                }
            }
        }
        Ok(())
    }

    /// Keys grouped by the node that serves their slot now.
    fn by_node(&self, keys: Vec<String>) -> Vec<(Option<String>, Vec<String>)> {
        let mut out: Vec<(Option<String>, Vec<String>)> = Vec::new();
        for k in keys {
            let node = self
                .topology
                .node(topology::slot(k.as_bytes()))
                .map(str::to_owned);
            match out.iter_mut().find(|(n, _)| *n == node) {
                Some((_, v)) => v.push(k),
                None => out.push((node, vec![k])),
            }
        }
        out
    }

    /// Drops the connection to `node`: the keys followed there become pending.
    /// Returns them.
    fn lose(&mut self, node: &str) -> Vec<String> {
        self.links.remove(node);
        self.stale = true;
        let lost: Vec<String> = self
            .route
            .iter()
            .filter(|(_, n)| n.as_str() == node)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &lost {
            self.route.remove(k);
            self.pending.insert(k.clone());
        }
        lost
    }
}

/// One session's life: subscribe to everything wanted, then follow changes and
/// deliver messages until the connection (on a Redis Cluster: the slot map) fails.
async fn session(
    ctx: &Ctx<'_>,
    ever_up: &mut bool,
    backoff: &mut Backoff,
) -> Result<(), ConnError> {
    let Ctx {
        hub,
        keys,
        state,
        m,
        settings,
        dialer,
        ..
    } = *ctx;
    let (events_tx, mut events) = mpsc::channel::<Event>(EVENTS);
    let cluster = dialer.deployment.mode == Mode::Cluster;
    let mut links = Links {
        cluster,
        topology: topology::discover(dialer, None).await?,
        stale: false,
        links: AHashMap::new(),
        next_id: 0,
        events: events_tx,
        route: AHashMap::new(),
        pending: AHashSet::new(),
    };
    let node = hub.config().node_id.as_str();
    let interest = hub.interest();
    let mut follow = Follow::new(hub.clone(), ctx.queue.clone());
    let history = hub.history().cloned();
    let mut actual: AHashSet<String> = AHashSet::new();
    // Keys Redis confirmed (and still followed where they were confirmed).
    let mut confirmed: AHashSet<String> = AHashSet::new();
    let mut wanted: Vec<String> = vec![keys.all(), keys.node(node)];
    wanted.extend(interest.snapshot().iter().map(|k| keys.for_interest(k)));
    let mut unconfirmed = wanted.len();
    actual.extend(wanted.iter().cloned());
    links.subscribe(dialer, wanted).await?;
    let mut up = false;
    let mut probe = tokio::time::interval(settings.probe_every());
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry = tokio::time::interval(RETRY_EVERY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut refreshed = Instant::now();
    let mut stalled = false;
    loop {
        tokio::select! {
            Some((addr, id, v)) = events.recv() => {
                // From a connection dropped since: nothing it says counts.
                let Some(link) = links.links.get_mut(&addr).filter(|l| l.id == id) else {
                    continue;
                };
                link.unanswered = None;
                let v = match v {
                    Ok(Value::Error(e)) if !cluster => {
                        // SSUBSCRIBE needs Redis 7; anything refused here is a setup error.
                        return Err(ConnError::Refused(e));
                    }
                    Ok(v) => v,
                    Err(e) if !cluster => return Err(e),
                    Err(e) => Value::Error(e.to_string()),
                };
                match v {
                Value::Array(Some(items)) => {
                    let kind = items.first().and_then(Value::as_bytes).map(|b| &b[..]);
                    match kind {
                        Some(b"smessage") => {
                            let (Some(key), Some(body)) = (
                                items.get(1).and_then(Value::as_bytes),
                                items.get(2).and_then(Value::as_bytes),
                            ) else {
                                m.undecodable.increment(1);
                                continue;
                            };
                            deliver(hub, keys, m, &mut follow, &confirmed, key, body.clone()).await;
                        }
                        Some(b"ssubscribe") => {
                            // Still followed, and on this node: replies waiting for
                            // it may go.
                            let key = items.get(1).and_then(Value::as_bytes);
                            let key = key.and_then(|k| std::str::from_utf8(k).ok());
                            let here = key.filter(|k| {
                                actual.contains(*k) && links.route.get(*k).is_some_and(|n| *n == addr)
                            });
                            if let Some(key) = here {
                                confirmed.insert(key.to_owned());
                                if let Some(k) = interest_key(keys, key.as_bytes()) {
                                    if let pushgate_hub::Key::Channel(c) = &k {
                                        follow.confirmed(c);
                                    }
                                    send_released(hub, interest.confirm(k));
                                }
                            }
                            if up {
                                continue;
                            }
                            unconfirmed = unconfirmed.saturating_sub(1);
                            if unconfirmed == 0 {
                                up = true;
                                backoff.reset();
                                if *ever_up {
                                    m.reconnects.increment(1);
                                }
                                *ever_up = true;
                                tracing::info!(subscriptions = actual.len(), "broker subscriber following redis");
                                state.set_subscriber(true, None);
                            }
                        }
                        Some(b"sunsubscribe") => {
                            // Not asked for (the key is still wanted here): Redis
                            // dropped it because its slot moved to another node.
                            let key = items.get(1).and_then(Value::as_bytes);
                            let key = key.and_then(|k| std::str::from_utf8(k).ok());
                            let moved = key.filter(|k| {
                                actual.contains(*k) && links.route.get(*k).is_some_and(|n| *n == addr)
                            });
                            if let Some(key) = moved {
                                tracing::info!(%key, %addr, "broker subscriber: redis moved a followed key; following it again");
                                links.route.remove(key);
                                links.pending.insert(key.to_owned());
                                links.stale = true;
                                lost(keys, &mut follow, &mut confirmed, key);
                            }
                        }
                        _ => {}
                    }
                }
                Value::Error(e) => {
                    // A Redis Cluster master failed, refused (CLUSTERDOWN) or
                    // redirected (MOVED) a subscription: everything followed on it
                    // is followed again once the slot map names a node that answers.
                    tracing::warn!(error = %e, %addr, "broker subscriber: a redis cluster master failed; following its keys elsewhere");
                    m.reconnects.increment(1);
                    for k in links.lose(&addr) {
                        lost(keys, &mut follow, &mut confirmed, &k);
                    }
                }
                _ => {}
                }
            },
            _ = interest.changed() => {
                let (mut add, mut remove) = (Vec::new(), Vec::new());
                for (k, wanted) in interest.take_changes() {
                    let key = keys.for_interest(&k);
                    match (wanted, actual.contains(&key)) {
                        (true, false) => add.push(key),
                        (false, true) => remove.push(key),
                        _ => {}
                    }
                }
                for k in &remove {
                    actual.remove(k);
                    confirmed.remove(k);
                    if let Some(k) = interest_key(keys, k.as_bytes()) {
                        if let pushgate_hub::Key::Channel(c) = &k {
                            follow.unfollowed(c);
                        }
                        send_released(hub, interest.unconfirm(&k));
                    }
                }
                links.unsubscribe(&remove).await?;
                if !up {
                    unconfirmed += add.len();
                }
                actual.extend(add.iter().cloned());
                links.subscribe(dialer, add).await?;
            }
            (channel, id, snap) = follow.next_read(), if follow.busy() => {
                follow.apply(channel, id, snap).await;
            }
            _ = sync_requested(history.as_deref()) => {
                let h = history.as_deref().expect("requested only with history");
                for c in h.take_sync_requests() {
                    // Not followed yet: the confirmation of its subscription reads it.
                    if confirmed.contains(&keys.channel(&c)) {
                        follow.requested(&c);
                    }
                }
            }
            // A Redis Cluster: keys whose node failed are followed again where the
            // slot map (read again first) says; the map is read every REFRESH_EVERY.
            _ = retry.tick(), if cluster => {
                if links.stale || refreshed.elapsed() >= REFRESH_EVERY {
                    match topology::discover(dialer, Some(&links.topology)).await {
                        Ok(t) => {
                            refreshed = Instant::now();
                            links.stale = false;
                            // Keys followed on a node that no longer serves their slot.
                            let moved: Vec<String> = links
                                .route
                                .iter()
                                .filter(|(k, n)| t.node(topology::slot(k.as_bytes())) != Some(n.as_str()))
                                .map(|(k, _)| k.clone())
                                .collect();
                            links.topology = t;
                            if !moved.is_empty() {
                                links.unsubscribe(&moved).await?;
                                for k in &moved {
                                    lost(keys, &mut follow, &mut confirmed, k);
                                }
                                links.pending.extend(moved);
                            }
                        }
                        // No node of the cluster answers: start over (down until one does).
                        Err(e) => return Err(e),
                    }
                }
                if !links.pending.is_empty() {
                    let again: Vec<String> = links.pending.drain().filter(|k| actual.contains(k)).collect();
                    links.subscribe(dialer, again).await?;
                }
            }
            _ = probe.tick() => {
                let limit = SILENCE_LIMIT.max(settings.timeout * 10);
                let mut silent = Vec::new();
                for (addr, link) in links.links.iter_mut() {
                    match link.unanswered {
                        None => {
                            send_grouped(&mut link.write, "PING", &[], cluster).await?;
                            link.unanswered = Some(Instant::now());
                        }
                        Some(since) if since.elapsed() >= limit => silent.push((addr.clone(), since.elapsed())),
                        Some(_) => {}
                    }
                }
                for (addr, for_how_long) in silent {
                    if !cluster {
                        return Err(ConnError::Timeout(addr, for_how_long));
                    }
                    for k in links.lose(&addr) {
                        lost(keys, &mut follow, &mut confirmed, &k);
                    }
                }
            },
        }
        // Redis slower than the timeout on a connection: the broker is down (but the
        // connection is kept, so nothing it still sends is lost if it was only slow).
        let slow = links.links.values().any(|l| {
            l.unanswered
                .is_some_and(|t| t.elapsed() >= settings.timeout)
        });
        if slow != stalled && up {
            stalled = slow;
            if slow {
                let why = Unavailable::Stalled(settings.timeout);
                tracing::warn!(error = %why, "broker subscriber");
                state.set_subscriber(false, Some(why));
            } else {
                tracing::info!("broker subscriber: redis answers again");
                state.set_subscriber(true, None);
            }
        }
        m.subscriptions.set(actual.len() as f64);
    }
}

/// A key no longer followed where it was (its node failed or its slot moved): not
/// confirmed until followed again; a history channel's stream is read again then,
/// from the last offset delivered here, which fills the gap.
fn lost(keys: &Keys, follow: &mut Follow, confirmed: &mut AHashSet<String>, key: &str) {
    confirmed.remove(key);
    if let Some(KeyKind::Channel(c)) = keys.parse(key) {
        follow.lost(c);
    }
}

/// Resolves when the hub asks for a stream to be synced (never without history).
async fn sync_requested(history: Option<&pushgate_hub::History>) {
    match history {
        Some(h) => h.sync_requested().await,
        None => std::future::pending().await,
    }
}

/// Sends `cmd` with `keys` (in chunks; on a Redis Cluster one command per slot, as
/// sharded pub/sub requires); `PING` is sent without arguments, the other commands
/// not at all without keys.
async fn send_grouped(
    w: &mut WriteHalf<Stream>,
    cmd: &str,
    keys: &[String],
    by_slot: bool,
) -> Result<(), ConnError> {
    if keys.is_empty() && cmd != "PING" {
        return Ok(());
    }
    let mut out = Vec::new();
    if keys.is_empty() {
        resp::command(&mut out, [cmd.as_bytes()]);
    } else if by_slot {
        let mut groups: AHashMap<u16, Vec<&str>> = AHashMap::new();
        for k in keys {
            groups
                .entry(topology::slot(k.as_bytes()))
                .or_default()
                .push(k);
        }
        for group in groups.values() {
            for chunk in group.chunks(CHUNK) {
                resp::command(
                    &mut out,
                    std::iter::once(cmd.as_bytes()).chain(chunk.iter().map(|k| k.as_bytes())),
                );
            }
        }
    } else {
        for chunk in keys.chunks(CHUNK) {
            resp::command(
                &mut out,
                std::iter::once(cmd.as_bytes()).chain(chunk.iter().map(|k| k.as_bytes())),
            );
        }
    }
    w.write_all(&out).await?;
    Ok(())
}

/// The interest key a bus key stands for (channel and user keys only).
fn interest_key(keys: &Keys, key: &[u8]) -> Option<pushgate_hub::Key> {
    match keys.parse(std::str::from_utf8(key).ok()?)? {
        KeyKind::Channel(c) => Some(pushgate_hub::Key::Channel(c.into())),
        KeyKind::User(u) => Some(pushgate_hub::Key::User(u.into())),
        _ => None,
    }
}

/// Sends replies that no longer wait for a bus subscription.
fn send_released(hub: &Hub, released: Vec<pushgate_hub::Released>) {
    for (conn, frame) in released {
        hub.send_to(conn, frame);
    }
}

/// Decodes a message from the bus and hands it to this node's shards.
async fn deliver(
    hub: &Hub,
    keys: &Keys,
    m: &Metrics,
    follow: &mut Follow,
    confirmed: &AHashSet<String>,
    key: &Bytes,
    body: Bytes,
) {
    let node = hub.config().node_id.as_str();
    let Some(kind) = std::str::from_utf8(key).ok().and_then(|k| keys.parse(k)) else {
        m.undecodable.increment(1);
        return;
    };
    let body = match wire::decode(body, matches!(kind, KeyKind::Node(_))) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "broker: dropped a bus message");
            m.undecodable.increment(1);
            return;
        }
    };
    if body.origin == node && !body.echo {
        // Our own publication, already delivered here when Redis took it.
        m.echoes.increment(1);
        return;
    }
    let payload = match body.what {
        What::Publication(p) => p,
        What::Presence(note) => {
            // Sent to this node's watchers of the channel; the origin sent its own.
            if let (KeyKind::Channel(c), Some(p)) = (&kind, hub.presence()) {
                m.control.increment(1);
                let client = pushgate_protocol::PresenceClient {
                    conn: note.conn.display(&body.origin).to_string(),
                    user: note.user,
                    info: note.info,
                };
                let event = if note.joined {
                    pushgate_protocol::PresenceEvent::Join
                } else {
                    pushgate_protocol::PresenceEvent::Leave
                };
                p.send_event(hub, event, c, &client, None);
            }
            return;
        }
        What::Control(c) => {
            let who = match kind {
                KeyKind::User(u) => Local::User(u),
                KeyKind::Node(n) if n == node => Local::Conns(&body.conns),
                _ => return,
            };
            m.control.increment(1);
            apply(hub, who, &c);
            return;
        }
    };
    let exclude = body.exclude.filter(|x| x.node == node).map(|x| x.id);
    if let (KeyKind::Channel(c), Some(position)) = (&kind, body.position) {
        m.channel.increment(1);
        // A message that crossed an unsubscribe: the stream is not followed now.
        if std::str::from_utf8(key).is_ok_and(|k| confirmed.contains(k)) {
            let p = Positioned {
                position,
                payload,
                exclude,
            };
            follow.deliver(c, p).await;
        }
        return;
    }
    let target = match kind {
        KeyKind::All => {
            m.all.increment(1);
            Target::All
        }
        KeyKind::Channel(c) => {
            m.channel.increment(1);
            Target::Channels(vec![c.to_owned()])
        }
        KeyKind::User(u) => {
            m.user.increment(1);
            Target::Users(vec![u.to_owned()])
        }
        KeyKind::Node(n) if n == node && !body.conns.is_empty() => {
            m.conn.increment(1);
            Target::Conns(body.conns)
        }
        KeyKind::Node(_) => return,
    };
    let p = Publication {
        target,
        payload,
        exclude,
    };
    // Not awaiting the report: shards take it in order; a full shard queue makes
    // this wait, and Redis buffers behind it.
    if let Err(e) = hub.submit(p, SOURCE).await {
        tracing::debug!(error = %e, "broker: publication from another node refused here");
    }
}
