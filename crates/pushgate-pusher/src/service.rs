//! [`Pusher`]: the Pusher surface of one node, what the HTTP API (pusher-api) and the
//! WebSocket side share: publish an event, look channels and members up, terminate a
//! user's connections. Everything goes through the node's [`Broker`], as the
//! `pushgate.v1` ingresses do: same limits, same shards, cluster-wide delivery.

use std::sync::{Arc, OnceLock};

use pushgate_broker::{
    Broker, BrokerError, CensusError, Control, ControlReport, Delivery, Message, NodeConn, Subject,
    Target,
};
use pushgate_hub::{Hub, PresenceError};
use pushgate_protocol::{ConnId, Payload};
use thiserror::Error;

use crate::app::{PusherApp, PusherApps};
use crate::channel::{self, ChannelKind, NameError};
use crate::socket_id::SocketId;
use crate::wire::{Envelope, Member, MAX_EVENT_LEN};

/// Most channels one trigger may name (Pusher's limit).
pub const MAX_TRIGGER_CHANNELS: usize = 100;
/// The close code of `terminate_connections` (Pusher's: the client does not reconnect).
pub const TERMINATED: u16 = 4009;

/// Why a call of the Pusher surface was refused.
#[derive(Debug, Error)]
pub enum PusherError {
    #[error("channel {name:?}: {error}")]
    BadChannel { name: String, error: NameError },
    #[error("event name must be 1 to {MAX_EVENT_LEN} characters")]
    BadEvent,
    #[error("{0} channels in one trigger; at most {MAX_TRIGGER_CHANNELS}")]
    TooManyChannels(usize),
    #[error("no channel named")]
    NoChannel,
    #[error("socket_id {0:?} is not of the form 123.456")]
    BadSocketId(String),
    #[error("user {name:?}: {error}")]
    BadUser { name: String, error: NameError },
    #[error("channel {0:?} is not a presence channel")]
    NotPresence(String),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Presence(#[from] PresenceError),
    #[error(transparent)]
    Census(#[from] CensusError),
}

/// One occupied channel of an app, cluster-wide (`counts.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The Pusher channel name.
    pub name: String,
    /// Subscribers on every node (pushgate.v1 subscribers of the mapped channel too).
    pub subscription_count: usize,
}

/// What the webhooks (pusher-api) are told. Each method is called on the node where
/// the thing happened, off the fan-out path; it must not block (queue and return).
pub trait PusherEvents: Send + Sync + 'static {
    /// A client event was accepted on `channel` (`user_id`: the sender's, on presence
    /// channels).
    fn client_event(
        &self,
        _app: &PusherApp,
        _channel: &str,
        _event: &str,
        _data: &str,
        _socket_id: &str,
        _user_id: Option<&str>,
    ) {
    }
    /// A user's first connection joined a presence channel: on this node with one
    /// node, in the whole cluster with `broker = "redis"` (called once for the
    /// cluster, on the node whose change made it).
    fn member_added(&self, _app: &PusherApp, _channel: &str, _user_id: &str) {}
    /// A user's last connection left a presence channel (the same scope).
    fn member_removed(&self, _app: &PusherApp, _channel: &str, _user_id: &str) {}
    /// A channel got its first subscriber on this node.
    fn channel_occupied(&self, _app: &PusherApp, _channel: &str) {}
    /// A channel lost its last subscriber on this node.
    fn channel_vacated(&self, _app: &PusherApp, _channel: &str) {}
}

/// The Pusher surface of one node. Cheap to share (`Arc`).
pub struct Pusher {
    apps: PusherApps,
    broker: Broker,
    node: String,
    node_number: u32,
    pub(crate) events: OnceLock<Arc<dyn PusherEvents>>,
}

impl Pusher {
    pub fn new(apps: PusherApps, broker: Broker) -> Arc<Pusher> {
        let node = broker.hub().config().node_id.clone();
        Arc::new(Pusher {
            node_number: crate::socket_id::node_number(&node),
            node,
            apps,
            broker,
            events: OnceLock::new(),
        })
    }

    /// Installs the Pusher dialect on the hub (publications and presence events in
    /// Pusher's form for Pusher connections) and returns the WebSocket side, for the
    /// edge. Call once, before serving.
    pub fn install(self: &Arc<Self>) -> Arc<dyn pushgate_edge::Surface> {
        self.hub()
            .install_dialect(Arc::new(crate::dialect::PusherDialect {
                pusher: Arc::downgrade(self),
            }));
        Arc::new(crate::ws::PusherSurface::new(self.clone()))
    }

    pub fn apps(&self) -> &PusherApps {
        &self.apps
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    pub fn hub(&self) -> &Hub {
        self.broker.hub()
    }

    /// Installs the webhooks' sink (only the first one counts).
    pub fn set_events(&self, events: Arc<dyn PusherEvents>) {
        let _ = self.events.set(events);
    }

    pub(crate) fn events(&self) -> Option<&Arc<dyn PusherEvents>> {
        self.events.get()
    }

    /// The socket id of a connection of this node.
    pub fn socket_id(&self, conn: ConnId) -> SocketId {
        SocketId {
            node: self.node_number,
            conn,
        }
    }

    /// The pushgate channels of `channels` (app `app`), checked.
    pub fn map_channels(app: &PusherApp, channels: &[String]) -> Result<Vec<String>, PusherError> {
        if channels.is_empty() {
            return Err(PusherError::NoChannel);
        }
        if channels.len() > MAX_TRIGGER_CHANNELS {
            return Err(PusherError::TooManyChannels(channels.len()));
        }
        channels
            .iter()
            .map(|c| {
                channel::to_pushgate(&app.id, c).map_err(|error| PusherError::BadChannel {
                    name: c.clone(),
                    error,
                })
            })
            .collect()
    }

    /// Triggers `event` with `data` on `channels` of `app`, on every node, except the
    /// connection `exclude_socket_id` (Pusher's `socket_id` parameter). The data is
    /// delivered as given (a string; Pusher's SDKs send JSON text). Limits are the
    /// node's (`max_payload_bytes` on the whole envelope).
    pub async fn publish(
        &self,
        app: &PusherApp,
        channels: &[String],
        event: &str,
        data: &str,
        exclude_socket_id: Option<&str>,
    ) -> Result<Delivery, PusherError> {
        self.publish_as(app, channels, event, data, exclude_socket_id, None)
            .await
    }

    /// [`Pusher::publish`] with the sender's `user_id` (client events on presence
    /// channels carry it).
    pub(crate) async fn publish_as(
        &self,
        app: &PusherApp,
        channels: &[String],
        event: &str,
        data: &str,
        exclude_socket_id: Option<&str>,
        user_id: Option<&str>,
    ) -> Result<Delivery, PusherError> {
        if event.is_empty() || event.len() > MAX_EVENT_LEN {
            return Err(PusherError::BadEvent);
        }
        let mapped = Self::map_channels(app, channels)?;
        let exclude = match exclude_socket_id {
            None | Some("") => None,
            Some(s) => {
                let id =
                    SocketId::parse(s).ok_or_else(|| PusherError::BadSocketId(s.to_owned()))?;
                self.resolve(id).await
            }
        };
        let payload = Envelope {
            event: event.into(),
            data: data.into(),
            user_id: user_id.map(Into::into),
        }
        .to_payload();
        let m = Message {
            target: Target::Channels(mapped),
            payload: Payload::Text(payload),
            exclude,
            idempotency_key: None,
        };
        Ok(self.broker.publish(m, "pusher").await?)
    }

    /// The node and connection of a socket id: this node's at once, another's through
    /// the cluster's node list; `None` if no live node has that number (then there is
    /// nothing to exclude).
    async fn resolve(&self, id: SocketId) -> Option<NodeConn> {
        if id.node == self.node_number {
            return Some(NodeConn {
                node: self.node.clone(),
                id: id.conn,
            });
        }
        let nodes = self.broker.cluster_stats().await.ok()?;
        nodes
            .into_iter()
            .find(|n| crate::socket_id::node_number(&n.node) == id.node)
            .map(|n| NodeConn {
                node: n.node,
                id: id.conn,
            })
    }

    /// Every member (connection) of a presence channel of `app`, on every node.
    pub async fn presence_members(
        &self,
        app: &PusherApp,
        channel: &str,
    ) -> Result<Vec<Member>, PusherError> {
        if ChannelKind::of(channel) != ChannelKind::Presence {
            return Err(PusherError::NotPresence(channel.to_owned()));
        }
        let pg =
            channel::to_pushgate(&app.id, channel).map_err(|error| PusherError::BadChannel {
                name: channel.to_owned(),
                error,
            })?;
        let clients = self.broker.presence(&pg).await?;
        Ok(clients
            .into_iter()
            .filter_map(|c| {
                Some(Member {
                    user_id: c.user?,
                    user_info: c.info,
                })
            })
            .collect())
    }

    /// The distinct user ids of a presence channel of `app` (Pusher's
    /// `/channels/{name}/users`), in the order first seen.
    pub async fn presence_users(
        &self,
        app: &PusherApp,
        channel: &str,
    ) -> Result<Vec<String>, PusherError> {
        let mut users: Vec<String> = Vec::new();
        for m in self.presence_members(app, channel).await? {
            if !users.contains(&m.user_id) {
                users.push(m.user_id);
            }
        }
        Ok(users)
    }

    /// Closes every connection signed in as `user_id` of `app`, on every node: they get
    /// `pusher:error` 4009 and close code 4009 (pusher-js does not reconnect).
    pub async fn terminate_user(
        &self,
        app: &PusherApp,
        user_id: &str,
    ) -> Result<ControlReport, PusherError> {
        let user =
            channel::user_to_pushgate(&app.id, user_id).map_err(|error| PusherError::BadUser {
                name: user_id.to_owned(),
                error,
            })?;
        let c = Control::Disconnect {
            code: TERMINATED,
            reason: "terminated by the app".into(),
        };
        Ok(self.broker.control(Subject::User(user), c).await?)
    }
}
