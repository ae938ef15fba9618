//! The `Pushgate` service: converts requests into hub calls and hub answers into
//! replies. Every refusal is an [`IngressError`], so its status code is decided in
//! one place.

use std::pin::Pin;
use std::sync::Arc;

use pushgate_broker::{Broker, Control, Delivery, Message, NodeConn, Subject, Target};
use pushgate_hub::history::MAX_READ;
use pushgate_hub::Hub;
use pushgate_protocol::{validate_channel, validate_user, Payload};
use tokio::sync::Semaphore;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::config::GrpcConfig;
use crate::error::IngressError;
use crate::idempotency::IdempotencyWindow;
use crate::pb::{self, pushgate_server::Pushgate};

/// Most channels one Subscribe, Unsubscribe or Presence call may name (as for a client
/// command).
pub const MAX_CHANNELS_PER_CALL: usize = 100;

/// The source label of publications that arrive through gRPC.
pub(crate) const SOURCE: &str = "grpc";

/// The implementation of `pushgate.v1.Pushgate`. Cheap to clone.
#[derive(Clone)]
pub struct PushgateService {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) broker: Broker,
    pub(crate) hub: Hub,
    pub(crate) config: GrpcConfig,
    /// Bounds unary publications in flight; a call that finds none left is refused.
    pub(crate) in_flight: Semaphore,
    pub(crate) window: Arc<IdempotencyWindow>,
    /// Cancelled when the node stops: open streams stop reading and end.
    pub(crate) stop: CancellationToken,
}

impl PushgateService {
    pub fn new(broker: Broker, config: GrpcConfig, stop: CancellationToken) -> Self {
        let window = IdempotencyWindow::new(
            config.idempotency_ttl,
            config.idempotency_capacity,
            config.idempotency_max_bytes,
        );
        PushgateService {
            shared: Arc::new(Shared {
                hub: broker.hub().clone(),
                broker,
                in_flight: Semaphore::new(config.max_in_flight.max(1)),
                config,
                window,
                stop,
            }),
        }
    }
}

impl Shared {
    /// Checks a publication and turns it into the broker's terms.
    pub(crate) fn prepare(&self, p: Option<pb::Publication>) -> Result<Message, IngressError> {
        let p = p.ok_or(IngressError::NoPublication)?;
        let payload = match p.payload {
            Some(pb::publication::Payload::Text(t)) => Payload::Text(t),
            Some(pb::publication::Payload::Binary(b)) => Payload::Binary(b.into()),
            None => return Err(IngressError::NoPayload),
        };
        let no_target = || IngressError::Publish(pushgate_hub::PublishError::NoTarget);
        let kind = p.target.and_then(|t| t.kind).ok_or_else(no_target)?;
        let target = match kind {
            pb::target::Kind::All(true) => Target::All,
            pb::target::Kind::All(false) => return Err(no_target()),
            pb::target::Kind::Channels(n) => Target::Channels(n.names),
            pb::target::Kind::Users(n) => {
                if n.names.iter().any(String::is_empty) {
                    return Err(IngressError::Empty("user"));
                }
                Target::Users(n.names)
            }
            pb::target::Kind::Conns(n) => {
                if n.names.is_empty() {
                    return Err(no_target());
                }
                let conns = n
                    .names
                    .iter()
                    .map(|s| node_conn(s))
                    .collect::<Result<_, _>>()?;
                Target::Conns(conns)
            }
        };
        let exclude = match p.exclude.as_str() {
            "" => None,
            s => Some(node_conn(s)?),
        };
        Ok(Message {
            target,
            payload,
            exclude,
            idempotency_key: None,
        })
    }

    /// The reply for a publication's outcome.
    pub(crate) fn reply(&self, d: Delivery) -> pb::PublishReply {
        let r = d.local;
        pb::PublishReply {
            enqueued: r.enqueued,
            skipped: r.skipped,
            nodes_accepted: d.nodes,
            nodes: vec![pb::NodeReport {
                node_id: self.hub.config().node_id.clone(),
                enqueued: r.enqueued,
                skipped: r.skipped,
            }],
            positions: d
                .positions
                .into_iter()
                .map(|(c, p)| {
                    let p = pb::Position {
                        epoch: p.epoch,
                        offset: p.offset,
                    };
                    (c, p)
                })
                .collect(),
        }
    }
}

/// Parses a connection id of any node.
fn node_conn(s: &str) -> Result<NodeConn, IngressError> {
    NodeConn::parse(s).ok_or_else(|| IngressError::BadConnId(s.to_owned()))
}

/// Checks a user id named by an admin call (as a publication's users are checked).
fn check_user(name: &str) -> Result<(), IngressError> {
    validate_user(name).map_err(|error| IngressError::BadUser {
        name: name.chars().take(64).collect(),
        error,
    })
}

/// Who an admin call is about: a connection of any node, or a user.
fn subject(conn: Option<String>, user: Option<String>) -> Result<Subject, IngressError> {
    match (conn, user) {
        (Some(c), _) if c.is_empty() => Err(IngressError::Empty("conn")),
        (Some(c), _) => Ok(Subject::Conn(node_conn(&c)?)),
        (_, Some(u)) if u.is_empty() => Err(IngressError::Empty("user")),
        (_, Some(u)) => {
            check_user(&u)?;
            Ok(Subject::User(u))
        }
        (None, None) => Err(IngressError::NoSubject),
    }
}

fn split_disconnect(who: Option<pb::disconnect_request::Who>) -> (Option<String>, Option<String>) {
    match who {
        Some(pb::disconnect_request::Who::Conn(c)) => (Some(c), None),
        Some(pb::disconnect_request::Who::User(u)) => (None, Some(u)),
        None => (None, None),
    }
}

fn split_subscribe(who: Option<pb::subscribe_request::Who>) -> (Option<String>, Option<String>) {
    match who {
        Some(pb::subscribe_request::Who::Conn(c)) => (Some(c), None),
        Some(pb::subscribe_request::Who::User(u)) => (None, Some(u)),
        None => (None, None),
    }
}

impl PushgateService {
    /// `Subscribe` and `Unsubscribe`: validate, then carry the change to the node(s).
    async fn change_subscriptions(
        &self,
        req: Request<pb::SubscribeRequest>,
        change: fn(Vec<String>) -> Control,
    ) -> Result<Response<pb::SubscribeReply>, Status> {
        let req = req.into_inner();
        let s = &self.shared;
        check_channels(&req.channels)?;
        let (conn, user) = split_subscribe(req.who);
        let who = subject(conn, user)?;
        let r = s
            .broker
            .control(who, change(req.channels))
            .await
            .map_err(IngressError::from)?;
        Ok(Response::new(pb::SubscribeReply {
            conns: r.local.applied as u64,
            refused: r.local.refused as u64,
            nodes: r.nodes,
        }))
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<pb::PublishStreamReply, Status>> + Send>>;

#[tonic::async_trait]
impl Pushgate for PushgateService {
    async fn publish(
        &self,
        req: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishReply>, Status> {
        observe("Publish", async {
            let s = &self.shared;
            let m = s.prepare(req.into_inner().publication)?;
            let _permit = s
                .in_flight
                .try_acquire()
                .map_err(|_| IngressError::Overloaded(s.config.max_in_flight))?;
            let d = s
                .broker
                .publish(m, SOURCE)
                .await
                .map_err(IngressError::from)?;
            Ok(Response::new(s.reply(d)))
        })
        .await
    }

    type PublishStreamStream = ReplyStream;

    async fn publish_stream(
        &self,
        req: Request<Streaming<pb::PublishStreamRequest>>,
    ) -> Result<Response<ReplyStream>, Status> {
        observe("PublishStream", async {
            let replies = crate::stream::run(self.shared.clone(), req.into_inner());
            Ok(Response::new(Box::pin(replies) as ReplyStream))
        })
        .await
    }

    async fn disconnect(
        &self,
        req: Request<pb::DisconnectRequest>,
    ) -> Result<Response<pb::DisconnectReply>, Status> {
        observe("Disconnect", async {
            let req = req.into_inner();
            let code = match req.code {
                0 => 4002,
                c @ (1000 | 1001 | 4000..=4999) => c as u16,
                c => return Err(IngressError::CloseCode(c).into()),
            };
            if req.reason.len() > 123 {
                return Err(IngressError::CloseReasonTooLong(req.reason.len()).into());
            }
            let (conn, user) = split_disconnect(req.who);
            let who = subject(conn, user)?;
            let c = Control::Disconnect {
                code,
                reason: req.reason,
            };
            let r = self
                .shared
                .broker
                .control(who, c)
                .await
                .map_err(IngressError::from)?;
            tracing::info!(
                disconnected = r.local.applied,
                nodes = r.nodes,
                "disconnect through gRPC"
            );
            Ok(Response::new(pb::DisconnectReply {
                disconnected: r.local.applied as u64,
                nodes: r.nodes,
            }))
        })
        .await
    }

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<pb::SubscribeReply>, Status> {
        observe(
            "Subscribe",
            self.change_subscriptions(req, Control::Subscribe),
        )
        .await
    }

    async fn unsubscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<pb::SubscribeReply>, Status> {
        observe(
            "Unsubscribe",
            self.change_subscriptions(req, Control::Unsubscribe),
        )
        .await
    }

    async fn stats(
        &self,
        _req: Request<pb::StatsRequest>,
    ) -> Result<Response<pb::StatsReply>, Status> {
        observe("Stats", async {
            let hub = &self.shared.hub;
            let st = hub.stats();
            let cluster = self
                .shared
                .broker
                .cluster_stats()
                .await
                .map_err(IngressError::from)?;
            Ok(Response::new(pb::StatsReply {
                node_id: hub.config().node_id.clone(),
                connections: st.connections as u64,
                channels: st.channels as u64,
                subscriptions: st.subscriptions as u64,
                per_shard: st.per_shard.iter().map(|&n| n as u64).collect(),
                pending_publications: hub.pending_publications() as u64,
                cluster_connections: cluster.iter().map(|n| n.connections).sum(),
                cluster_subscriptions: cluster.iter().map(|n| n.subscriptions).sum(),
                cluster: cluster
                    .into_iter()
                    .map(|n| pb::NodeStats {
                        node_id: n.node,
                        connections: n.connections,
                        channels: n.channels,
                        subscriptions: n.subscriptions,
                    })
                    .collect(),
            }))
        })
        .await
    }

    async fn presence(
        &self,
        req: Request<pb::PresenceRequest>,
    ) -> Result<Response<pb::PresenceReply>, Status> {
        observe("Presence", async {
            let req = req.into_inner();
            let hub = &self.shared.hub;
            let node = hub.config().node_id.as_str();
            if req.channels.len() > MAX_CHANNELS_PER_CALL {
                return Err(IngressError::TooManyChannels(req.channels.len()).into());
            }
            if req.users.len() > pushgate_hub::MAX_PUBLICATION_USERS {
                return Err(IngressError::TooManyUsers(req.users.len()).into());
            }
            for name in &req.users {
                check_user(name)?;
            }
            for name in &req.channels {
                validate_channel(name).map_err(|error| IngressError::BadChannel {
                    name: name.clone(),
                    error,
                })?;
            }
            let broker = &self.shared.broker;
            let online = if req.users.is_empty() {
                Vec::new()
            } else {
                broker
                    .online(req.users.clone())
                    .await
                    .map_err(IngressError::from)?
            };
            let users = req
                .users
                .into_iter()
                .zip(online)
                .map(|(user, online)| pb::UserPresence {
                    conns: hub
                        .user_conns(&user)
                        .into_iter()
                        .map(|id| id.display(node).to_string())
                        .collect(),
                    user,
                    online,
                })
                .collect();
            let mut channels = Vec::with_capacity(req.channels.len());
            for channel in req.channels {
                let kept = hub.presence().is_some_and(|p| p.applies(&channel));
                channels.push(if kept {
                    let clients = broker
                        .presence(&channel)
                        .await
                        .map_err(IngressError::from)?;
                    pb::ChannelPresence {
                        subscribers: clients.len() as u64,
                        users: pushgate_protocol::presence::distinct_users(&clients) as u64,
                        clients: clients.into_iter().map(client).collect(),
                        cluster: true,
                        channel,
                    }
                } else {
                    pb::ChannelPresence {
                        subscribers: hub.channel_subscribers(&channel) as u64,
                        channel,
                        ..Default::default()
                    }
                });
            }
            Ok(Response::new(pb::PresenceReply { users, channels }))
        })
        .await
    }

    async fn presence_stats(
        &self,
        req: Request<pb::PresenceStatsRequest>,
    ) -> Result<Response<pb::PresenceStatsReply>, Status> {
        observe("PresenceStats", async {
            let req = req.into_inner();
            check_channels(&req.channels)?;
            let mut channels = Vec::with_capacity(req.channels.len());
            for channel in req.channels {
                let clients = self
                    .shared
                    .broker
                    .presence(&channel)
                    .await
                    .map_err(IngressError::from)?;
                channels.push(pb::ChannelPresenceStats {
                    clients: clients.len() as u64,
                    users: pushgate_protocol::presence::distinct_users(&clients) as u64,
                    channel,
                });
            }
            Ok(Response::new(pb::PresenceStatsReply { channels }))
        })
        .await
    }

    async fn online(
        &self,
        req: Request<pb::OnlineRequest>,
    ) -> Result<Response<pb::OnlineReply>, Status> {
        observe("Online", async {
            let req = req.into_inner();
            if req.users.is_empty() {
                return Err(IngressError::Empty("users").into());
            }
            if req.users.len() > pushgate_hub::MAX_PUBLICATION_USERS {
                return Err(IngressError::TooManyUsers(req.users.len()).into());
            }
            for name in &req.users {
                check_user(name)?;
            }
            let online = self
                .shared
                .broker
                .online(req.users.clone())
                .await
                .map_err(IngressError::from)?;
            let users = req
                .users
                .into_iter()
                .zip(online)
                .map(|(user, online)| pb::UserOnline { user, online })
                .collect();
            Ok(Response::new(pb::OnlineReply { users }))
        })
        .await
    }

    async fn history(
        &self,
        req: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryReply>, Status> {
        observe("History", async {
            let req = req.into_inner();
            validate_channel(&req.channel).map_err(|error| IngressError::BadChannel {
                name: req.channel.clone(),
                error,
            })?;
            let limit = match req.limit {
                0 => 100,
                l if l as usize > MAX_READ => return Err(IngressError::Limit(l).into()),
                l => l as usize,
            };
            let page = self
                .shared
                .broker
                .history(&req.channel, req.since, limit)
                .await
                .map_err(IngressError::from)?
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "channel {:?} keeps no history (no [[history]] rule matches it)",
                        req.channel
                    ))
                })?;
            Ok(Response::new(pb::HistoryReply {
                epoch: page.epoch,
                offset: page.offset,
                oldest: page.oldest,
                publications: page
                    .publications
                    .into_iter()
                    .map(|(offset, p)| pb::HistoryPublication {
                        offset,
                        payload: Some(match p {
                            Payload::Text(t) => pb::history_publication::Payload::Text(t),
                            Payload::Binary(b) => {
                                pb::history_publication::Payload::Binary(b.to_vec())
                            }
                        }),
                    })
                    .collect(),
            }))
        })
        .await
    }
}

/// A presence channel's subscriber as the API names it.
fn client(c: pushgate_protocol::PresenceClient) -> pb::PresenceClient {
    pb::PresenceClient {
        conn: c.conn,
        user: c.user.unwrap_or_default(),
        info: c.info.unwrap_or_default(),
    }
}

/// Checks a call's channel list: 1 to [`MAX_CHANNELS_PER_CALL`] valid names.
fn check_channels(channels: &[String]) -> Result<(), IngressError> {
    if channels.is_empty() {
        return Err(IngressError::NoChannels);
    }
    if channels.len() > MAX_CHANNELS_PER_CALL {
        return Err(IngressError::TooManyChannels(channels.len()));
    }
    for name in channels {
        validate_channel(name).map_err(|error| IngressError::BadChannel {
            name: name.clone(),
            error,
        })?;
    }
    Ok(())
}

/// Counts a call and its duration by method and gRPC status (one lookup per call).
async fn observe<T>(
    method: &'static str,
    call: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    let started = std::time::Instant::now();
    let result = call.await;
    count_call(
        method,
        match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        },
    );
    metrics::histogram!("pushgate_grpc_request_duration_seconds", "method" => method)
        .record(started.elapsed().as_secs_f64());
    result
}

/// Counts one call in `pushgate_grpc_requests_total` (one lookup per call).
pub(crate) fn count_call(method: &'static str, code: tonic::Code) {
    metrics::counter!("pushgate_grpc_requests_total", "method" => method, "code" => code_label(code))
        .increment(1);
}

/// The `method` label of a call's path (`/pushgate.v1.Pushgate/Publish` → `Publish`):
/// one of the service's methods, or `other`, so that a caller cannot mint labels.
pub(crate) fn method_label(path: &str) -> &'static str {
    const METHODS: [&str; 10] = [
        "Publish",
        "PublishStream",
        "Disconnect",
        "Subscribe",
        "Unsubscribe",
        "Stats",
        "Presence",
        "PresenceStats",
        "Online",
        "History",
    ];
    let name = path.rsplit('/').next().unwrap_or("");
    METHODS.into_iter().find(|m| *m == name).unwrap_or("other")
}

fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        InvalidArgument => "INVALID_ARGUMENT",
        Unauthenticated => "UNAUTHENTICATED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        Unavailable => "UNAVAILABLE",
        NotFound => "NOT_FOUND",
        Aborted => "ABORTED",
        Internal => "INTERNAL",
        _ => "OTHER",
    }
}
