//! What arrives on the bus, decoded and handed to this node's shards: publications
//! (history channels' through [`Follow`], in offset order), presence events for this
//! node's watchers, and operators' calls; census queries and answers go to the
//! census desk. Each message's frame is encoded once, in the shards.

use ahash::AHashSet;
use bytes::Bytes;
use pushgate_hub::presence::Announced;
use pushgate_hub::{Hub, Presence, Publication, Target};
use pushgate_protocol::{PresenceClient, PresenceEvent};

use super::follow::{Follow, Positioned, SOURCE};
use super::subscriber::Ctx;
use crate::local::{apply, Local};
use crate::wire::{self, KeyKind, PresenceNote, What};

/// Messages received, by what they carry.
pub(super) struct Received {
    all: metrics::Counter,
    channel: metrics::Counter,
    user: metrics::Counter,
    conn: metrics::Counter,
    control: metrics::Counter,
    echoes: metrics::Counter,
    pub(super) undecodable: metrics::Counter,
}

impl Received {
    pub(super) fn new() -> Received {
        let received = |kind: &'static str| metrics::counter!("pushgate_broker_received_total", "target" => kind);
        Received {
            all: received("all"),
            channel: received("channel"),
            user: received("user"),
            conn: received("conn"),
            control: received("control"),
            echoes: metrics::counter!("pushgate_broker_echoes_total"),
            undecodable: metrics::counter!("pushgate_broker_undecodable_total"),
        }
    }
}

/// Decodes a message from the bus and hands it to this node's shards.
pub(super) async fn deliver(
    ctx: &Ctx<'_>,
    follow: &mut Follow,
    confirmed: &AHashSet<String>,
    key: &Bytes,
    body: Bytes,
) {
    let (hub, keys, m) = (ctx.hub, ctx.keys, &ctx.m.received);
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
    // Census messages (this node's own queries included: it answers them too).
    if let What::Census(msg) = body.what {
        m.control.increment(1);
        ctx.census.receive(&kind, body.origin, msg);
        return;
    }
    if let What::Presence(note) = body.what {
        // Every node, the origin too: the note carries the cluster's judgement of its
        // user's edge, and notes are heard in the order Redis wrote them.
        if let (KeyKind::Channel(c), Some(p)) = (&kind, hub.presence()) {
            m.control.increment(1);
            announce(hub, p, c, &body.origin, note);
        }
        return;
    }
    if body.origin == node && !body.echo {
        // Our own publication, already delivered here when Redis took it.
        m.echoes.increment(1);
        return;
    }
    let payload = match body.what {
        What::Publication(p) => p,
        // Handled above, before the echo check.
        What::Census(_) | What::Presence(_) => return,
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

/// A presence note, to this node's watchers of `channel` (the origin's own change: only
/// the dialect's member event, the pushgate.v1 one was sent when it happened).
fn announce(hub: &Hub, p: &Presence, channel: &str, origin: &str, note: PresenceNote) {
    let own = (origin == hub.config().node_id).then_some(note.conn);
    let client = PresenceClient {
        conn: note.conn.display(origin).to_string(),
        user: note.user,
        info: note.info,
    };
    let kind = if note.joined {
        PresenceEvent::Join
    } else {
        PresenceEvent::Leave
    };
    let a = Announced {
        kind,
        channel,
        client: &client,
        own,
        user_edge: note.user_edge,
        swept: note.swept,
    };
    p.announce(hub, &a);
}
