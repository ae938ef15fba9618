//! The [`Broker`]: where ingresses hand publications. In process, it is the hub
//! itself; with Redis, a publication goes on the bus for the other nodes and is
//! delivered here directly, once Redis has taken it.

use std::sync::Arc;

use pushgate_hub::{AdminReport, Hub, Publication, PublishError, PublishReport, Submitted};
use pushgate_protocol::Payload;
use thiserror::Error;
use tokio::sync::{oneshot, watch};

use crate::redis::{RedisBroker, RedisConfig};
use crate::wire::{Control, NodeConn};

/// Who a publication is for, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every connection on every node.
    All,
    /// Subscribers of each channel, on every node.
    Channels(Vec<String>),
    /// Every connection of each user, on every node.
    Users(Vec<String>),
    /// These connections, wherever they are (each id names its node).
    Conns(Vec<NodeConn>),
}

impl Target {
    /// The hub's name for this kind of target: `all`, `channel`, `user` or `conn`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::All => "all",
            Target::Channels(_) => "channel",
            Target::Users(_) => "user",
            Target::Conns(_) => "conn",
        }
    }

    /// How many names it lists (0 for `All`).
    pub fn len(&self) -> usize {
        match self {
            Target::All => 0,
            Target::Channels(v) | Target::Users(v) => v.len(),
            Target::Conns(v) => v.len(),
        }
    }

    /// Whether it lists no name (always true for `All`).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops repeated names, keeping the first of each in order: one pass with a set,
    /// so that nothing downstream compares names pairwise.
    pub fn dedup(&mut self) {
        fn first_of_each<T: Eq + std::hash::Hash + Clone>(v: &mut Vec<T>) {
            if v.len() < 2 {
                return;
            }
            let mut seen = ahash::AHashSet::with_capacity(v.len());
            v.retain(|x| seen.insert(x.clone()));
        }
        match self {
            Target::All => {}
            Target::Channels(v) | Target::Users(v) => first_of_each(v),
            Target::Conns(v) => first_of_each(v),
        }
    }
}

/// One publication, as a publisher states it.
#[derive(Debug, Clone)]
pub struct Message {
    pub target: Target,
    pub payload: Payload,
    /// A connection that must not receive it.
    pub exclude: Option<NodeConn>,
}

/// The outcome of a publication.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// What this node enqueued and skipped.
    pub local: PublishReport,
    /// Nodes that took the publication for delivery (this one included when it has a
    /// target here). With several channels or users, the largest count among them.
    pub nodes: u32,
}

/// Why a publication was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BrokerError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The bus cannot be reached: nothing was delivered on this node, and other
    /// nodes got it only if Redis took it before the connection failed.
    #[error("cluster broker unavailable: {0}")]
    Unavailable(String),
}

/// Who an operator's call is about, cluster-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// One connection, on whichever node it is.
    Conn(NodeConn),
    /// Every connection of a user, on every node.
    User(String),
}

/// The outcome of an operator's call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlReport {
    /// What it did to this node's connections.
    pub local: AdminReport,
    /// Nodes that took it (this one included when it has the user or connection).
    pub nodes: u32,
}

/// Per-node counts reported for cluster-wide stats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub node: String,
    pub connections: u64,
    pub channels: u64,
    pub subscriptions: u64,
}

/// The broker of one node. Cheap to clone.
#[derive(Clone)]
pub enum Broker {
    /// A single node: publications go straight to the hub.
    InProcess(Hub),
    /// Nodes joined through Redis pub/sub.
    Redis(Arc<RedisBroker>),
}

impl Broker {
    /// A Redis broker for `hub` (built with `track_interest`); starts its connections
    /// on the current runtime. It reports up once both are established.
    pub fn redis(hub: Hub, config: RedisConfig) -> Result<Broker, crate::UrlError> {
        Ok(Broker::Redis(RedisBroker::start(hub, config)?))
    }

    pub fn hub(&self) -> &Hub {
        match self {
            Broker::InProcess(hub) => hub,
            Broker::Redis(r) => r.hub(),
        }
    }

    /// `memory` or `redis`: the `broker` setting.
    pub fn kind(&self) -> &'static str {
        match self {
            Broker::InProcess(_) => "memory",
            Broker::Redis(_) => "redis",
        }
    }

    /// Whether publications can be accepted now (always, in process).
    pub fn is_up(&self) -> bool {
        match self {
            Broker::InProcess(_) => true,
            Broker::Redis(r) => r.is_up(),
        }
    }

    /// Follows [`Broker::is_up`].
    pub fn watch_up(&self) -> watch::Receiver<bool> {
        match self {
            Broker::InProcess(_) => watch::channel(true).1,
            Broker::Redis(r) => r.watch_up(),
        }
    }

    /// Accepts a publication and hands it on; its outcome comes from
    /// [`Pending::report`]. Publications submitted one after another are delivered on
    /// every node in that order, so a publisher can keep many in flight.
    ///
    /// The target's width is checked first (no list longer than its limit is walked),
    /// then repeated names are dropped.
    pub async fn submit(
        &self,
        mut m: Message,
        source: &'static str,
    ) -> Result<Pending, BrokerError> {
        if let Err(e) = pushgate_hub::check_width(m.target.kind(), m.target.len()) {
            e.count();
            return Err(e.into());
        }
        m.target.dedup();
        match self {
            Broker::InProcess(hub) => {
                if let Target::Conns(c) = &m.target {
                    // Only connections of other nodes may be named: nothing to submit
                    // here, but the publication is checked all the same.
                    let ids = pushgate_hub::Target::Conns(c.iter().map(|c| c.id).collect());
                    hub.validate(&ids, m.payload.len())?;
                }
                match local_part(hub, m) {
                    None => Ok(Pending(Inner::Ready(Delivery::default()))),
                    // `Hub::submit` validates the rest.
                    Some(p) => Ok(Pending(Inner::Local(hub.submit(p, source).await?))),
                }
            }
            Broker::Redis(r) => {
                r.hub()
                    .validate(&hub_target_shape(&m.target), m.payload.len())?;
                let rx = r.submit(m, source).await?;
                Ok(Pending(Inner::Remote(rx)))
            }
        }
    }

    /// [`Broker::submit`] and wait for the outcome.
    pub async fn publish(&self, m: Message, source: &'static str) -> Result<Delivery, BrokerError> {
        self.submit(m, source).await?.report().await
    }

    /// Carries an operator's call (disconnect, subscribe, unsubscribe) to every node
    /// with the user's connections, or to the node of the connection, and applies it
    /// to this node's part at once. Arguments must be validated by the caller.
    pub async fn control(&self, who: Subject, c: Control) -> Result<ControlReport, BrokerError> {
        let hub = self.hub();
        let node = hub.config().node_id.as_str();
        let local = match &who {
            Subject::User(u) => Some(Local::User(u)),
            Subject::Conn(nc) if nc.node == node => {
                Some(Local::Conns(std::slice::from_ref(&nc.id)))
            }
            Subject::Conn(_) => None,
        };
        let remote = match self {
            Broker::InProcess(_) => 0,
            Broker::Redis(r) => r.control(&who, &c).await?,
        };
        let report = local.map(|l| apply(hub, l, &c)).unwrap_or_default();
        let here = u32::from(report.applied + report.refused > 0);
        let nodes = match (self, &who) {
            // The user key's reply counts this node when it has the user.
            (Broker::Redis(_), Subject::User(_)) => remote.max(here),
            _ => remote + here,
        };
        Ok(ControlReport {
            local: report,
            nodes,
        })
    }

    /// Counts of every live node (just this one, in process).
    pub async fn cluster_stats(&self) -> Result<Vec<NodeStats>, BrokerError> {
        match self {
            Broker::InProcess(hub) => Ok(vec![node_stats(hub)]),
            Broker::Redis(r) => r.cluster_stats().await,
        }
    }

    /// Leaves the cluster: stops the bus connections and removes this node from the
    /// cluster stats. Call it after the clients are gone.
    pub async fn shutdown(&self) {
        if let Broker::Redis(r) = self {
            r.shutdown().await;
        }
    }
}

/// A publication accepted by the broker, whose outcome is not known yet.
pub struct Pending(Inner);

enum Inner {
    Ready(Delivery),
    Local(Submitted),
    Remote(oneshot::Receiver<Result<(u32, Option<Submitted>), BrokerError>>),
}

impl Pending {
    /// Waits until Redis (if any) and every involved shard of this node took it.
    pub async fn report(self) -> Result<Delivery, BrokerError> {
        match self.0 {
            Inner::Ready(d) => Ok(d),
            Inner::Local(s) => {
                let local = s.report().await?;
                Ok(Delivery { local, nodes: 1 })
            }
            Inner::Remote(rx) => {
                let (nodes, submitted) = rx
                    .await
                    .map_err(|_| BrokerError::Unavailable("the broker stopped".into()))??;
                let local = match submitted {
                    Some(s) => s.report().await?,
                    None => PublishReport::default(),
                };
                Ok(Delivery { local, nodes })
            }
        }
    }
}

/// The hub target with the same shape, for validation (connection ids of any node).
fn hub_target_shape(t: &Target) -> pushgate_hub::Target {
    match t {
        Target::All => pushgate_hub::Target::All,
        Target::Channels(c) => pushgate_hub::Target::Channels(c.clone()),
        Target::Users(u) => pushgate_hub::Target::Users(u.clone()),
        Target::Conns(c) => pushgate_hub::Target::Conns(c.iter().map(|c| c.id).collect()),
    }
}

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
    Conns(&'a [pushgate_protocol::ConnId]),
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

pub(crate) fn node_stats(hub: &Hub) -> NodeStats {
    let s = hub.stats();
    NodeStats {
        node: hub.config().node_id.clone(),
        connections: s.connections as u64,
        channels: s.channels as u64,
        subscriptions: s.subscriptions as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_hub::HubConfig;
    use pushgate_protocol::ConnId;

    #[test]
    fn repeated_names_are_dropped_keeping_the_first_of_each_in_order() {
        let mut t = Target::Channels(["b", "a", "b", "c", "a"].map(String::from).to_vec());
        t.dedup();
        assert_eq!(
            t,
            Target::Channels(["b", "a", "c"].map(String::from).to_vec())
        );
        let nc = |n: u64| NodeConn {
            node: "n1".into(),
            id: ConnId(n),
        };
        let mut t = Target::Conns(vec![nc(2), nc(1), nc(2)]);
        t.dedup();
        assert_eq!(t, Target::Conns(vec![nc(2), nc(1)]));
    }

    #[tokio::test]
    async fn an_over_wide_target_is_refused_before_anything_else() {
        let broker = Broker::InProcess(hub(false));
        let m = Message {
            target: Target::Users((0..1001).map(|i| format!("u{i}")).collect()),
            payload: Payload::Text("x".into()),
            exclude: None,
        };
        let e = broker.submit(m, "test").await.err().expect("refused");
        assert!(
            matches!(
                e,
                BrokerError::Publish(PublishError::TooManyTargets { count: 1001, .. })
            ),
            "{e}"
        );
    }

    fn hub(track_interest: bool) -> Hub {
        let hub = Hub::new(HubConfig {
            shards: 2,
            node_id: "n1".into(),
            max_payload: 10,
            track_interest,
            ..HubConfig::default()
        });
        for s in hub.shards() {
            tokio::spawn(s.clone().run());
        }
        hub
    }

    fn to(target: Target, data: &str) -> Message {
        Message {
            target,
            payload: Payload::Text(data.into()),
            exclude: None,
        }
    }

    fn elsewhere() -> Target {
        Target::Conns(vec![NodeConn {
            node: "n2".into(),
            id: ConnId(1),
        }])
    }

    #[tokio::test]
    async fn in_process_counts_this_node_only_and_checks_remote_only_publications() {
        let b = Broker::InProcess(hub(false));
        let d = b.publish(to(Target::All, "x"), "test").await.unwrap();
        assert_eq!(d.nodes, 1);
        let d = b.publish(to(elsewhere(), "x"), "test").await.unwrap();
        assert_eq!(d, Delivery::default(), "no node here holds it");
        let e = b.publish(to(elsewhere(), "far too long"), "test").await;
        assert!(matches!(
            e,
            Err(BrokerError::Publish(PublishError::TooLarge(12, 10)))
        ));
        assert!(b.is_up());
        assert_eq!(b.cluster_stats().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_unreachable_redis_refuses_publications_instead_of_losing_them() {
        // Port 1 on loopback: nothing listens there.
        let config = crate::RedisConfig {
            url: "redis://127.0.0.1:1".into(),
            prefix: "t".into(),
        };
        let b = Broker::redis(hub(true), config).unwrap();
        assert!(!b.is_up());
        match b.publish(to(Target::All, "x"), "test").await {
            Err(BrokerError::Unavailable(why)) => assert!(!why.is_empty()),
            other => panic!("{other:?}"),
        }
        // Bad input is still the publisher's mistake, whatever the broker's state.
        let e = b.publish(to(Target::Channels(vec![]), "x"), "test").await;
        assert!(matches!(
            e,
            Err(BrokerError::Publish(PublishError::NoTarget))
        ));
        b.shutdown().await;
    }
}
