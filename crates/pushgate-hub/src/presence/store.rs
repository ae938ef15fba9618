//! The node's presence: per presence channel, its local members and the local
//! connections that want `join` / `leave` events.
//!
//! Rooms are spread over [`STRIPES`] maps by a hash of the channel name, each behind
//! its own lock, so shards recording joins of different channels rarely meet. A room
//! exists only while it has a member; a channel without a rule never gets one.

use std::sync::{Arc, OnceLock};

use ahash::{AHashMap, AHashSet};
use parking_lot::Mutex;
use pushgate_protocol::{ConnId, PresenceClient};
use tokio::sync::mpsc;

use super::{Change, Member, PresenceCluster, PresenceError, PresenceRule};

/// Lock stripes of the room maps.
const STRIPES: usize = 16;

/// One stripe's rooms, by channel.
type Rooms = AHashMap<Box<str>, Room>;

#[derive(Default)]
struct Room {
    members: AHashMap<ConnId, Member>,
    /// Members that asked for events (a subset of `members`).
    watchers: AHashSet<ConnId>,
    /// Members per user: whether a join or leave is its user's first or last.
    users: AHashMap<Arc<str>, u32>,
}

pub(crate) struct Metrics {
    joins: metrics::Counter,
    leaves: metrics::Counter,
    members: metrics::Gauge,
    pub(crate) events: metrics::Counter,
}

/// Presence on this node. Built by the hub when the config has `[[presence]]` rules.
pub struct Presence {
    rules: Vec<PresenceRule>,
    rooms: Box<[Mutex<Rooms>]>,
    hasher: ahash::RandomState,
    /// Every change, in order, for the events task.
    tx: mpsc::UnboundedSender<Change>,
    pub(crate) rx: Mutex<Option<mpsc::UnboundedReceiver<Change>>>,
    pub(crate) cluster: OnceLock<Arc<dyn PresenceCluster>>,
    pub(crate) metrics: Metrics,
}

impl Presence {
    pub fn new(rules: Vec<PresenceRule>) -> Presence {
        let (tx, rx) = mpsc::unbounded_channel();
        Presence {
            rules,
            rooms: (0..STRIPES).map(|_| Mutex::default()).collect(),
            hasher: ahash::RandomState::with_seeds(0x70, 0x72, 0x65, 0x73),
            tx,
            rx: Mutex::new(Some(rx)),
            cluster: OnceLock::new(),
            metrics: Metrics {
                joins: metrics::counter!("pushgate_presence_joins_total"),
                leaves: metrics::counter!("pushgate_presence_leaves_total"),
                members: metrics::gauge!("pushgate_presence_members"),
                events: metrics::counter!("pushgate_presence_events_sent_total"),
            },
        }
    }

    pub fn rules(&self) -> &[PresenceRule] {
        &self.rules
    }

    /// Whether `channel` keeps presence (a rule matches it).
    pub fn applies(&self, channel: &str) -> bool {
        self.rules.iter().any(|r| r.matches(channel))
    }

    /// Makes a cluster broker the source of reads and the sink of local changes.
    /// Only the first one installed counts.
    pub fn install(&self, cluster: Arc<dyn PresenceCluster>) {
        let _ = self.cluster.set(cluster);
    }

    fn stripe(&self, channel: &str) -> &Mutex<Rooms> {
        &self.rooms[(self.hasher.hash_one(channel) as usize) % STRIPES]
    }

    /// A local connection joined `channel` (called under its shard's lock; a channel
    /// without a rule is ignored).
    pub(crate) fn join(
        &self,
        channel: &str,
        conn: ConnId,
        user: Option<&str>,
        info: Option<&Arc<str>>,
    ) {
        if !self.applies(channel) {
            return;
        }
        let member = Member {
            user: user.map(Arc::from),
            info: info.cloned(),
        };
        let mut rooms = self.stripe(channel).lock();
        let room = rooms.entry(channel.into()).or_default();
        if room.members.insert(conn, member.clone()).is_some() {
            return;
        }
        let user_edge = match &member.user {
            Some(u) => {
                let n = room.users.entry(u.clone()).or_default();
                *n += 1;
                *n == 1
            }
            None => false,
        };
        drop(rooms);
        self.metrics.joins.increment(1);
        self.metrics.members.increment(1.0);
        let _ = self.tx.send(Change {
            channel: channel.into(),
            conn,
            member,
            joined: true,
            user_edge,
        });
    }

    /// A local connection left `channel` (unsubscribed or closed).
    pub(crate) fn leave(&self, channel: &str, conn: ConnId) {
        if !self.applies(channel) {
            return;
        }
        let mut rooms = self.stripe(channel).lock();
        let Some(room) = rooms.get_mut(channel) else {
            return;
        };
        let Some(member) = room.members.remove(&conn) else {
            return;
        };
        room.watchers.remove(&conn);
        let mut user_edge = false;
        if let Some(u) = &member.user {
            if let Some(n) = room.users.get_mut(u) {
                *n -= 1;
                if *n == 0 {
                    room.users.remove(u);
                    user_edge = true;
                }
            }
        }
        if room.members.is_empty() {
            rooms.remove(channel);
        }
        drop(rooms);
        self.metrics.leaves.increment(1);
        self.metrics.members.decrement(1.0);
        let _ = self.tx.send(Change {
            channel: channel.into(),
            conn,
            member,
            joined: false,
            user_edge,
        });
    }

    /// Makes a member of `channel` receive its events; false if it is not a member.
    pub(crate) fn watch(&self, channel: &str, conn: ConnId) -> bool {
        let mut rooms = self.stripe(channel).lock();
        match rooms.get_mut(channel) {
            Some(room) if room.members.contains_key(&conn) => {
                room.watchers.insert(conn);
                true
            }
            _ => false,
        }
    }

    /// Whether a local connection is a member of `channel`.
    pub fn is_member(&self, channel: &str, conn: ConnId) -> bool {
        self.stripe(channel)
            .lock()
            .get(channel)
            .is_some_and(|r| r.members.contains_key(&conn))
    }

    /// This node's members of `channel`, in connection order.
    pub fn local(&self, channel: &str, node: &str) -> Vec<PresenceClient> {
        let rooms = self.stripe(channel).lock();
        let Some(room) = rooms.get(channel) else {
            return Vec::new();
        };
        let mut ids: Vec<(&ConnId, &Member)> = room.members.iter().collect();
        ids.sort_unstable_by_key(|(id, _)| **id);
        ids.into_iter()
            .map(|(id, m)| PresenceClient {
                conn: id.display(node).to_string(),
                user: m.user.as_deref().map(Into::into),
                info: m.info.as_deref().map(Into::into),
            })
            .collect()
    }

    /// Whether a local member of `channel` has `user`.
    pub fn has_user(&self, channel: &str, user: &str) -> bool {
        self.stripe(channel)
            .lock()
            .get(channel)
            .is_some_and(|r| r.users.contains_key(user))
    }

    /// Local connections that want `channel`'s events.
    pub fn watchers(&self, channel: &str) -> Vec<ConnId> {
        self.stripe(channel)
            .lock()
            .get(channel)
            .map(|r| r.watchers.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every local room and its members (a copy: a cluster broker refreshes its
    /// entries from it periodically).
    pub fn local_rooms(&self) -> Vec<(String, Vec<(ConnId, Member)>)> {
        let mut out = Vec::new();
        for stripe in self.rooms.iter() {
            let rooms = stripe.lock();
            out.extend(rooms.iter().map(|(ch, room)| {
                let members = room
                    .members
                    .iter()
                    .map(|(id, m)| (*id, m.clone()))
                    .collect();
                (ch.to_string(), members)
            }));
        }
        out
    }

    /// Every member of `channel`: on every node through the cluster broker, else on
    /// this one.
    pub async fn read(
        &self,
        channel: &str,
        node: &str,
    ) -> Result<Vec<PresenceClient>, PresenceError> {
        if !self.applies(channel) {
            return Err(PresenceError::NoRule(channel.to_owned()));
        }
        match self.cluster.get() {
            Some(c) => c.read(channel.to_owned()).await,
            None => Ok(self.local(channel, node)),
        }
    }
}
