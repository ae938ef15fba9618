//! The [`Broker`]: where ingresses hand publications. In process, it is the hub
//! itself; with Redis, a publication goes on the bus for the other nodes and is
//! delivered here directly, once Redis has taken it.

use std::sync::Arc;
use std::time::Duration;

use pushgate_hub::{Hub, PublishError, PublishReport, Submitted};
use tokio::sync::{oneshot, watch};

use crate::census::{self, Census, CensusError, CensusQuery, MAX_NAMES};
use crate::control::{ControlReport, NodeStats, Subject};
use crate::delivery::{Accepted, Delivery};
use crate::error::BrokerError;
use crate::idempotency::{self, Check, Claim, Window};
use crate::local::{apply, local_part, node_stats, Local};
use crate::message::{Message, Target};
use crate::redis::{PublishOutcome, RedisBroker, RedisConfig};
use crate::wire::Control;
use pushgate_hub::{HistoryPage, PresenceError};

/// The broker of one node. Cheap to clone.
#[derive(Clone)]
pub enum Broker {
    /// A single node: publications go straight to the hub; idempotency keys are
    /// remembered in the window, on this node.
    InProcess(Hub, Arc<Window>),
    /// Nodes joined through Redis pub/sub.
    Redis(Arc<RedisBroker>),
}

impl Broker {
    /// A single node's broker; idempotency keys are remembered for `window`.
    pub fn in_process(hub: Hub, window: Duration) -> Broker {
        Broker::InProcess(hub, Window::new(window))
    }

    /// A Redis broker for `hub` (built with `track_interest`); starts its connections
    /// on the current runtime. It reports up once both are established.
    pub fn redis(hub: Hub, config: RedisConfig) -> Result<Broker, crate::DeploymentError> {
        Ok(Broker::Redis(RedisBroker::start(hub, config)?))
    }

    pub fn hub(&self) -> &Hub {
        match self {
            Broker::InProcess(hub, _) => hub,
            Broker::Redis(r) => r.hub(),
        }
    }

    /// `memory` or `redis`: the `broker` setting.
    pub fn kind(&self) -> &'static str {
        match self {
            Broker::InProcess(..) => "memory",
            Broker::Redis(_) => "redis",
        }
    }

    /// Cluster-wide channel occupancy (`redis::occupancy`) for `groups`, reported to
    /// `report`; `None` in process, where the hub's own transitions are the node's and
    /// the cluster's.
    pub fn occupancy(
        &self,
        groups: Vec<String>,
        report: crate::redis::OccupancyReport,
    ) -> Option<crate::redis::Occupancy> {
        match self {
            Broker::InProcess(..) => None,
            Broker::Redis(r) => Some(r.occupancy(groups, report)),
        }
    }

    /// Whether publications can be accepted now (always, in process).
    pub fn is_up(&self) -> bool {
        match self {
            Broker::InProcess(..) => true,
            Broker::Redis(r) => r.is_up(),
        }
    }

    /// Follows [`Broker::is_up`].
    pub fn watch_up(&self) -> watch::Receiver<bool> {
        match self {
            Broker::InProcess(..) => watch::channel(true).1,
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
            Broker::InProcess(hub, window) => {
                if let Target::Conns(_) = &m.target {
                    // Only connections of other nodes may be named: nothing to submit
                    // here, but the publication is checked all the same.
                    hub.validate(&m.target, m.payload.len())?;
                }
                let claim = match m.idempotency_key.as_deref() {
                    None => None,
                    Some(key) => {
                        // Checked before the key is claimed: a refused publication
                        // leaves no trace in the window.
                        hub.validate(&m.target, m.payload.len())?;
                        match window.check(key) {
                            Check::New(claim) => Some(claim),
                            Check::Seen(first) => return Ok(Pending(Inner::Seen(first))),
                        }
                    }
                };
                match local_part(hub, m) {
                    None => {
                        let d = Delivery::default();
                        if let Some(c) = claim {
                            c.complete(&d);
                        }
                        Ok(Pending(Inner::Ready(d)))
                    }
                    Some(p) => Ok(Pending(Inner::Local(hub.submit(p, source).await?, claim))),
                }
            }
            Broker::Redis(r) => {
                r.hub().validate(&m.target, m.payload.len())?;
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
            Broker::InProcess(..) => 0,
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

    /// A page of a history channel's kept publications: after `since` (the first
    /// `limit`), or the newest `limit`. `Ok(None)` when the channel has no history rule.
    pub async fn history(
        &self,
        channel: &str,
        since: Option<u64>,
        limit: usize,
    ) -> Result<Option<HistoryPage>, BrokerError> {
        match self {
            Broker::InProcess(hub, _) => {
                Ok(hub.history().and_then(|h| h.read(channel, since, limit)))
            }
            // Read from Redis: a node's own copy follows Redis only while the node
            // follows the channel.
            Broker::Redis(r) => r.history(channel, since, limit).await,
        }
    }

    /// Every subscriber of a presence channel, on every node, in connection-id order.
    pub async fn presence(
        &self,
        channel: &str,
    ) -> Result<Vec<pushgate_protocol::PresenceClient>, PresenceError> {
        let hub = self.hub();
        match hub.presence() {
            Some(p) => p.read(channel, &hub.config().node_id).await,
            None => Err(PresenceError::NoRule(channel.to_owned())),
        }
    }

    /// Whether each user has at least one connection on some node (in process: on
    /// this one). Needs no presence rule.
    pub async fn online(&self, users: Vec<String>) -> Result<Vec<bool>, PresenceError> {
        match self {
            Broker::InProcess(hub, _) => Ok(users
                .iter()
                .map(|u| !hub.user_conns(u).is_empty())
                .collect()),
            Broker::Redis(r) => r.online(users).await,
        }
    }

    /// Subscribers of the channels `q` names, on every node that follows the bus,
    /// summed; in process, this node's. With Redis a census either counts every
    /// node that heard it or fails ([`CensusError`]): docs/cluster.md, "Census".
    pub async fn census(&self, q: CensusQuery) -> Result<Census, CensusError> {
        if let CensusQuery::Channels(names) = &q {
            if names.len() > MAX_NAMES {
                return Err(CensusError::TooManyNames(names.len()));
            }
        }
        match self {
            Broker::InProcess(hub, _) => Ok(Census {
                channels: census::local(hub, &q, None).channels,
                nodes: 1,
            }),
            Broker::Redis(r) => r.census(q).await,
        }
    }

    /// Counts of every live node (just this one, in process).
    pub async fn cluster_stats(&self) -> Result<Vec<NodeStats>, BrokerError> {
        match self {
            Broker::InProcess(hub, _) => Ok(vec![node_stats(hub)]),
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
    Local(Submitted, Option<Claim>),
    /// A retry of a key in the in-process window: the first attempt's outcome.
    Seen(watch::Receiver<Option<Delivery>>),
    Remote(oneshot::Receiver<PublishOutcome>),
}

impl Pending {
    /// Waits until Redis (if any) and every involved shard of this node took it.
    pub async fn report(self) -> Result<Delivery, BrokerError> {
        match self.0 {
            Inner::Ready(d) => Ok(d),
            Inner::Local(mut s, claim) => {
                let positions = s.take_positions();
                let local = s.report().await?;
                let d = Delivery {
                    local,
                    nodes: 1,
                    positions,
                    duplicate: false,
                };
                if let Some(c) = claim {
                    c.complete(&d);
                }
                Ok(d)
            }
            // The first attempt was refused (the node is stopping): so is this one.
            Inner::Seen(first) => idempotency::outcome(first)
                .await
                .ok_or(BrokerError::Publish(PublishError::ShuttingDown)),
            Inner::Remote(rx) => {
                let taken = rx.await.map_err(BrokerError::stopped)??;
                let local = match taken.local {
                    Some(s) => s.report().await?,
                    None => PublishReport::default(),
                };
                Ok(Delivery {
                    local,
                    nodes: taken.nodes,
                    positions: taken.positions,
                    duplicate: taken.duplicate,
                })
            }
        }
    }

    /// Waits only until the publication is accepted: with Redis, until Redis took it;
    /// this node's part is then in every involved shard's queue, behind the
    /// publications submitted before it, and is enqueued without the caller waiting
    /// (an idempotency key's outcome is recorded once it is). A retry of a key seen in
    /// the window still waits for the first attempt's outcome.
    pub async fn accepted(self) -> Result<Accepted, BrokerError> {
        match self.0 {
            Inner::Local(s, claim) => {
                let positions = s.positions().to_vec();
                if claim.is_some() {
                    // The key's outcome is recorded by `report`, as when waited for
                    // (refused: the claim is dropped, so a retry publishes again).
                    tokio::spawn(Pending(Inner::Local(s, claim)).report());
                }
                Ok(Accepted {
                    nodes: 1,
                    positions,
                    duplicate: false,
                })
            }
            Inner::Remote(rx) => {
                let taken = rx.await.map_err(BrokerError::stopped)??;
                Ok(Accepted {
                    nodes: taken.nodes,
                    positions: taken.positions,
                    duplicate: taken.duplicate,
                })
            }
            ready_or_seen => Pending(ready_or_seen).report().await.map(Accepted::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::NodeConn;
    use pushgate_hub::{HubConfig, PublishError};
    use pushgate_protocol::{ConnId, Payload};

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
        let broker = Broker::in_process(hub(false), std::time::Duration::from_secs(60));
        let m = to(
            Target::Users((0..1001).map(|i| format!("u{i}")).collect()),
            "x",
        );
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
            idempotency_key: None,
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
        let b = Broker::in_process(hub(false), Duration::from_secs(60));
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
    async fn in_process_a_census_is_this_nodes_counts() {
        let hub = hub(false);
        let (id, shard) = hub.next_conn();
        let conn = shard.register(id, None);
        conn.subscribe(&["a".into(), "b".into()]).unwrap();
        let b = Broker::in_process(hub, Duration::from_secs(60));
        let c = b.census(CensusQuery::Prefix(String::new())).await.unwrap();
        assert_eq!(c.nodes, 1);
        assert_eq!(c.channels, vec![("a".into(), 1), ("b".into(), 1)]);
        let c = b
            .census(CensusQuery::Channels(vec!["b".into(), "z".into()]))
            .await
            .unwrap();
        assert_eq!((c.get("b"), c.get("z")), (1, 0));
        let many = CensusQuery::Channels((0..101).map(|i| i.to_string()).collect());
        assert!(matches!(
            b.census(many).await,
            Err(CensusError::TooManyNames(101))
        ));
    }

    #[tokio::test]
    async fn in_process_a_key_is_published_once_within_the_window() {
        let hub = hub(false);
        let (id, shard) = hub.next_conn();
        let conn = shard.register(id, None);
        conn.subscribe(&["a".into()]).unwrap();
        let b = Broker::in_process(hub, Duration::from_secs(60));
        let keyed = |data: &str| Message {
            idempotency_key: Some("k1".into()),
            ..to(Target::Channels(vec!["a".into()]), data)
        };
        let first = b.publish(keyed("x"), "test").await.unwrap();
        assert_eq!((first.local.enqueued, first.duplicate), (1, false));
        let again = b.publish(keyed("x"), "test").await.unwrap();
        assert_eq!((again.local.enqueued, again.duplicate), (0, true));
        // A refused attempt does not take the key.
        let e = b.publish(keyed("far too long"), "test").await;
        assert!(e.is_err());
        let other = Message {
            idempotency_key: Some("k2".into()),
            ..to(Target::Channels(vec!["a".into()]), "far too long")
        };
        assert!(b.publish(other, "test").await.is_err());
        let k2 = Message {
            idempotency_key: Some("k2".into()),
            ..to(Target::Channels(vec!["a".into()]), "y")
        };
        assert!(!b.publish(k2, "test").await.unwrap().duplicate);
    }

    #[tokio::test]
    async fn an_unreachable_redis_refuses_publications_instead_of_losing_them() {
        // Port 1 on loopback: nothing listens there.
        let config = crate::RedisConfig {
            url: "redis://127.0.0.1:1".into(),
            ..crate::RedisConfig::default()
        };
        let b = Broker::redis(hub(true), config).unwrap();
        assert!(!b.is_up());
        match b.publish(to(Target::All, "x"), "test").await {
            Err(BrokerError::Unavailable(why)) => assert!(!why.to_string().is_empty()),
            other => panic!("{other:?}"),
        }
        // A census is refused too, never answered with this node's counts alone.
        let e = b.census(CensusQuery::Prefix(String::new())).await;
        assert!(
            matches!(e, Err(CensusError::Broker(BrokerError::Unavailable(_)))),
            "{e:?}"
        );
        // Bad input is still the publisher's mistake, whatever the broker's state.
        let e = b.publish(to(Target::Channels(vec![]), "x"), "test").await;
        assert!(matches!(
            e,
            Err(BrokerError::Publish(PublishError::NoTarget))
        ));
        b.shutdown().await;
    }
}
