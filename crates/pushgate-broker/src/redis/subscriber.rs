//! The subscriber task: one connection in sharded pub/sub mode.
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

use std::sync::Arc;
use std::time::Duration;

use ahash::AHashSet;
use bytes::Bytes;
use pushgate_hub::{Hub, Publication, Target};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, ConnError, Endpoint};
use super::follow::{Follow, Positioned, SOURCE};
use super::request::Request;
use super::resp::{self, Value};
use super::{Backoff, Settings, State};
use crate::error::Unavailable;
use crate::local::{apply, Local};
use crate::wire::{self, KeyKind, Keys, What};

/// Keys per `SSUBSCRIBE` command when re-subscribing many at once.
const CHUNK: usize = 512;
/// A subscriber connection on which Redis stays silent this long is made again.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);

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
    endpoint: &'a Endpoint,
    keys: &'a Keys,
    settings: Settings,
    state: &'a State,
    queue: &'a mpsc::Sender<Request>,
    m: &'a Metrics,
}

pub(crate) async fn run(
    hub: Hub,
    endpoint: Endpoint,
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
        endpoint: &endpoint,
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

/// One connection's life: subscribe to everything wanted, then follow changes and
/// deliver messages until the connection fails.
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
        ..
    } = *ctx;
    let mut conn = Conn::open(ctx.endpoint, settings.timeout).await?;
    let node = hub.config().node_id.as_str();
    let interest = hub.interest();
    let mut follow = Follow::new(hub.clone(), ctx.queue.clone());
    let history = hub.history().cloned();
    let mut actual: AHashSet<String> = AHashSet::new();
    // Keys Redis confirmed on this connection (and still followed).
    let mut confirmed: AHashSet<String> = AHashSet::new();
    let mut wanted: Vec<String> = vec![keys.all(), keys.node(node)];
    wanted.extend(interest.snapshot().iter().map(|k| keys.for_interest(k)));
    let mut unconfirmed = wanted.len();
    send(&mut conn, "SSUBSCRIBE", &wanted).await?;
    actual.extend(wanted);
    let mut up = false;
    // When the oldest unanswered PING was sent; whether that made the broker down.
    let mut probe = tokio::time::interval(settings.probe_every());
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unanswered: Option<Instant> = None;
    let mut stalled = false;
    loop {
        tokio::select! {
            v = conn.read() => {
                let v = v?;
                if unanswered.take().is_some() && stalled {
                    stalled = false;
                    tracing::info!("broker subscriber: redis answers again");
                    state.set_subscriber(true, None);
                }
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
                            // Still followed (not unsubscribed since): replies
                            // waiting for it may go.
                            let key = items.get(1).and_then(Value::as_bytes);
                            let key = key.and_then(|k| std::str::from_utf8(k).ok());
                            if let Some(key) = key.filter(|k| actual.contains(*k)) {
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
                        _ => {}
                    }
                }
                Value::Error(e) => {
                    // SSUBSCRIBE needs Redis 7; anything refused here is a setup error.
                    return Err(ConnError::Refused(e));
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
                send(&mut conn, "SUNSUBSCRIBE", &remove).await?;
                send(&mut conn, "SSUBSCRIBE", &add).await?;
                if !up {
                    unconfirmed += add.len();
                }
                actual.extend(add);
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
            _ = probe.tick() => match unanswered {
                None => {
                    send(&mut conn, "PING", &[]).await?;
                    unanswered = Some(Instant::now());
                }
                Some(since) => {
                    let silent = since.elapsed();
                    if silent >= SILENCE_LIMIT.max(settings.timeout * 10) {
                        return Err(ConnError::Timeout(ctx.endpoint.addr.clone(), silent));
                    }
                    if silent >= settings.timeout && up && !stalled {
                        stalled = true;
                        let why = Unavailable::Stalled(settings.timeout);
                        tracing::warn!(error = %why, "broker subscriber");
                        state.set_subscriber(false, Some(why));
                    }
                }
            },
        }
        m.subscriptions.set(actual.len() as f64);
    }
}

/// Resolves when the hub asks for a stream to be synced (never without history).
async fn sync_requested(history: Option<&pushgate_hub::History>) {
    match history {
        Some(h) => h.sync_requested().await,
        None => std::future::pending().await,
    }
}

/// Sends `cmd` with `keys` (in chunks); `PING` is sent without arguments, the other
/// commands not at all without keys.
async fn send(conn: &mut Conn, cmd: &str, keys: &[String]) -> Result<(), ConnError> {
    if keys.is_empty() && cmd != "PING" {
        return Ok(());
    }
    if keys.is_empty() {
        let mut out = Vec::new();
        resp::command(&mut out, [cmd.as_bytes()]);
        conn.stream.write_all(&out).await?;
        return Ok(());
    }
    let mut out = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        resp::command(
            &mut out,
            std::iter::once(cmd.as_bytes()).chain(chunk.iter().map(|k| k.as_bytes())),
        );
    }
    conn.stream.write_all(&out).await?;
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
