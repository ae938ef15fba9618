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
use pushgate_hub::Hub;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::census::Desk;
use super::conn::{ConnError, Dialer};
use super::deliver::{deliver, Received};
use super::deployment::Mode;
use super::follow::Follow;
use super::linger::{self, Linger};
use super::links::{send_grouped, Event, Links};
use super::request::Request;
use super::resp::Value;
use super::topology;
use super::{Backoff, Settings, State};
use crate::error::Unavailable;
use crate::wire::{KeyKind, Keys};

/// A subscriber connection on which Redis stays silent this long is made again.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// Values read from the connections and not yet handled; beyond, the readers wait
/// (and Redis buffers).
const EVENTS: usize = 1024;
/// On a Redis Cluster, how often keys whose node failed are tried again.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// On a Redis Cluster, the slot map is read again this often in any case.
const REFRESH_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Metrics {
    pub(super) received: Received,
    subscriptions: metrics::Gauge,
    reconnects: metrics::Counter,
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            received: Received::new(),
            subscriptions: metrics::gauge!("pushgate_broker_subscriptions"),
            reconnects: metrics::counter!("pushgate_broker_reconnects_total", "connection" => "subscriber"),
        }
    }
}

/// What a session needs.
pub(crate) struct Ctx<'a> {
    pub(super) hub: &'a Hub,
    dialer: &'a Dialer,
    pub(super) keys: &'a Keys,
    settings: Settings,
    state: &'a State,
    queue: &'a mpsc::Sender<Request>,
    /// Where census messages go (queries to count, answers to sum).
    pub(super) census: &'a Arc<Desk>,
    pub(super) m: &'a Metrics,
}

#[allow(clippy::too_many_arguments)] // each is one of the broker's parts
pub(crate) async fn run(
    hub: Hub,
    dialer: Dialer,
    keys: Keys,
    settings: Settings,
    state: Arc<State>,
    queue: mpsc::Sender<Request>,
    census: Arc<Desk>,
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
        census: &census,
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
    let mut linger = Linger::new(settings.unfollow_linger);
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
                                m.received.undecodable.increment(1);
                                continue;
                            };
                            deliver(ctx, &mut follow, &confirmed, key, body.clone()).await;
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
                let mut add = Vec::new();
                let mut remove = Vec::new();
                let now = Instant::now();
                for (k, wanted) in interest.take_changes() {
                    let key = keys.for_interest(&k);
                    match (wanted, actual.contains(&key)) {
                        (true, false) => add.push(key),
                        // Back within its linger (or never gone): still followed.
                        (true, true) => linger.cancel(&key),
                        // A channel lingers; a user key goes at once, so that
                        // "online" (its subscriber count) stays exact.
                        (false, true) if linger.is_on() && matches!(k, pushgate_hub::Key::Channel(_)) => {
                            linger.start(key, now)
                        }
                        (false, true) => remove.push(key),
                        _ => {}
                    }
                }
                let remove = release(ctx, &mut follow, &mut actual, &mut confirmed, remove);
                links.unsubscribe(&remove).await?;
                if !up {
                    unconfirmed += add.len();
                }
                actual.extend(add.iter().cloned());
                links.subscribe(dialer, add).await?;
            }
            // Keys whose linger is over, unfollowed if still unwanted.
            _ = linger::until(linger.next()) => {
                let expired = linger.expired(Instant::now());
                let remove = release(ctx, &mut follow, &mut actual, &mut confirmed, expired);
                links.unsubscribe(&remove).await?;
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

/// Stops following the keys that are still unwanted (a subscribe may have come back
/// since: that key stays followed): they leave `actual` and `confirmed`, history
/// channels are unfollowed, and replies still waiting on them are sent. Returns the
/// keys to unsubscribe.
fn release(
    ctx: &Ctx<'_>,
    follow: &mut Follow,
    actual: &mut AHashSet<String>,
    confirmed: &mut AHashSet<String>,
    keys: Vec<String>,
) -> Vec<String> {
    let interest = ctx.hub.interest();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(k) = interest_key(ctx.keys, key.as_bytes()) {
            let Some(released) = interest.unconfirm(&k) else {
                continue;
            };
            send_released(ctx.hub, released);
            if let pushgate_hub::Key::Channel(c) = &k {
                follow.unfollowed(c);
            }
        }
        actual.remove(&key);
        confirmed.remove(&key);
        out.push(key);
    }
    out
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
