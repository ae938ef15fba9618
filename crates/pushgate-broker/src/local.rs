//! This node's part of what crosses the cluster: the local share of a publication,
//! an operator's call applied to this node's connections, and this node's counts.
//! Both brokers use it: in process for everything, with Redis for what arrives from
//! the bus and for this node's share of what it publishes.

use pushgate_hub::{AdminReport, Hub, Publication};
use pushgate_protocol::ConnId;

use crate::control::NodeStats;
use crate::message::{Message, Target};
use crate::wire::Control;

/// This node's part of a publication; `None` if nothing here is targeted.
pub(crate) fn local_part(hub: &Hub, m: Message) -> Option<Publication> {
    let node = hub.config().node_id.as_str();
    let target = match m.target {
        Target::All => pushgate_hub::Target::All,
        Target::Channels(c) => pushgate_hub::Target::Channels(c),
        Target::Users(u) => pushgate_hub::Target::Users(u),
        Target::Conns(c) => {
            let ids: Vec<_> = c
                .into_iter()
                .filter(|c| c.node == node)
                .map(|c| c.id)
                .collect();
            if ids.is_empty() {
                return None;
            }
            pushgate_hub::Target::Conns(ids)
        }
    };
    Some(Publication {
        target,
        payload: m.payload,
        exclude: m.exclude.filter(|x| x.node == node).map(|x| x.id),
    })
}

/// This node's connections an operator's call applies to.
pub(crate) enum Local<'a> {
    User(&'a str),
    Conns(&'a [ConnId]),
}

/// Applies an operator's call to this node's connections.
pub(crate) fn apply(hub: &Hub, who: Local<'_>, c: &Control) -> AdminReport {
    let mut r = AdminReport::default();
    match (who, c) {
        (Local::User(u), Control::Disconnect { code, reason }) => {
            r.applied = hub.disconnect_user_with(u, *code, reason);
        }
        (Local::User(u), Control::Subscribe(chs)) => r = hub.subscribe_user(u, chs),
        (Local::User(u), Control::Unsubscribe(chs)) => r.applied = hub.unsubscribe_user(u, chs),
        (Local::Conns(ids), c) => {
            for &id in ids {
                let done = match c {
                    Control::Disconnect { code, reason } => hub.disconnect_with(id, *code, reason),
                    Control::Subscribe(chs) => match hub.subscribe_conn(id, chs) {
                        Some(Ok(())) => true,
                        Some(Err(_)) => {
                            r.refused += 1;
                            false
                        }
                        None => false,
                    },
                    Control::Unsubscribe(chs) => hub.unsubscribe_conn(id, chs),
                };
                r.applied += usize::from(done);
            }
        }
    }
    r
}

/// This node's counts, for cluster-wide stats.
pub(crate) fn node_stats(hub: &Hub) -> NodeStats {
    let s = hub.stats();
    NodeStats {
        node: hub.config().node_id.clone(),
        connections: s.connections as u64,
        channels: s.channels as u64,
        subscriptions: s.subscriptions as u64,
    }
}
