//! `pushgate admin`: the gRPC ingress's operator calls (Stats, Presence, Online, Disconnect,
//! Subscribe, Unsubscribe), so operators need no grpcurl. Each prints the reply as one
//! JSON object, with the field names of `pushgate.v1` (docs/grpc.md).

use anyhow::Result;
use clap::{ArgGroup, Args, Subcommand};
use pushgate_grpc::pb;
use serde_json::{json, Value};

use crate::grpc::{status, GrpcArgs};

/// `pushgate admin <call>`.
#[derive(Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    call: Call,
    #[command(flatten)]
    grpc: GrpcArgs,
}

#[derive(Subcommand)]
enum Call {
    /// This node's counts, and every live node's in `cluster`.
    Stats,
    /// Who is here: each user's connection ids on this node and whether it is online
    /// anywhere; each channel's subscribers (every node's, listed, for a channel under
    /// a [[presence]] rule; else this node's count).
    #[command(group(ArgGroup::new("about").required(true).multiple(true).args(["user", "channel"])))]
    Presence {
        /// A user (repeatable).
        #[arg(long, value_name = "USER")]
        user: Vec<String>,
        /// A channel (repeatable).
        #[arg(long, value_name = "NAME")]
        channel: Vec<String>,
    },
    /// Whether each user has a connection on some node.
    Online {
        /// A user (repeatable).
        #[arg(long, value_name = "USER", required = true)]
        user: Vec<String>,
    },
    /// Close a connection, or every connection of a user (on every node).
    Disconnect {
        #[command(flatten)]
        who: Who,
        /// The close code: 1000, 1001 or 4000-4999 (default 4002 "disconnected").
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        code: u32,
        /// The close frame's reason text (at most 123 bytes).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Subscribe a connection, or every connection of a user, to channels.
    Subscribe {
        #[command(flatten)]
        who: Who,
        /// A channel (repeatable).
        #[arg(long, value_name = "NAME", required = true)]
        channel: Vec<String>,
    },
    /// Unsubscribe a connection, or every connection of a user, from channels.
    Unsubscribe {
        #[command(flatten)]
        who: Who,
        /// A channel (repeatable).
        #[arg(long, value_name = "NAME", required = true)]
        channel: Vec<String>,
    },
}

/// Exactly one of a connection or a user.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct Who {
    /// A connection id, e.g. n1-42.
    #[arg(long, value_name = "ID")]
    conn: Option<String>,
    /// A user id.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
}

impl Who {
    fn disconnect(&self) -> Option<pb::disconnect_request::Who> {
        use pb::disconnect_request::Who as W;
        self.conn
            .clone()
            .map(W::Conn)
            .or_else(|| self.user.clone().map(W::User))
    }

    fn subscribe(&self) -> Option<pb::subscribe_request::Who> {
        use pb::subscribe_request::Who as W;
        self.conn
            .clone()
            .map(W::Conn)
            .or_else(|| self.user.clone().map(W::User))
    }
}

/// Runs one call and prints its reply.
pub fn run(args: AdminArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reply = rt.block_on(call(&args))?;
    println!("{reply}");
    Ok(())
}

async fn call(args: &AdminArgs) -> Result<Value> {
    let mut c = args.grpc.connect().await?;
    let g = &args.grpc;
    Ok(match &args.call {
        Call::Stats => {
            let r = c
                .stats(g.request(pb::StatsRequest {})?)
                .await
                .map_err(status)?;
            stats_json(r.into_inner())
        }
        Call::Presence { user, channel } => {
            let req = pb::PresenceRequest {
                users: user.clone(),
                channels: channel.clone(),
            };
            let r = c.presence(g.request(req)?).await.map_err(status)?;
            let r = r.into_inner();
            json!({
                "users": r.users.iter().map(|u| json!({"user": u.user, "conns": u.conns, "online": u.online})).collect::<Vec<_>>(),
                "channels": r.channels.iter().map(channel_presence).collect::<Vec<_>>(),
            })
        }
        Call::Online { user } => {
            let req = pb::OnlineRequest {
                users: user.clone(),
            };
            let r = c.online(g.request(req)?).await.map_err(status)?;
            json!({
                "users": r.into_inner().users.iter().map(|u| json!({"user": u.user, "online": u.online})).collect::<Vec<_>>(),
            })
        }
        Call::Disconnect { who, code, reason } => {
            let req = pb::DisconnectRequest {
                who: who.disconnect(),
                code: *code,
                reason: reason.clone(),
            };
            let r = c.disconnect(g.request(req)?).await.map_err(status)?;
            let r = r.into_inner();
            json!({"disconnected": r.disconnected, "nodes": r.nodes})
        }
        Call::Subscribe { who, channel } | Call::Unsubscribe { who, channel } => {
            let req = pb::SubscribeRequest {
                who: who.subscribe(),
                channels: channel.clone(),
            };
            let r = match &args.call {
                Call::Subscribe { .. } => c.subscribe(g.request(req)?).await,
                _ => c.unsubscribe(g.request(req)?).await,
            }
            .map_err(status)?
            .into_inner();
            json!({"conns": r.conns, "refused": r.refused, "nodes": r.nodes})
        }
    })
}

fn stats_json(r: pb::StatsReply) -> Value {
    let node = |n: &pb::NodeStats| {
        json!({
            "node_id": n.node_id,
            "connections": n.connections,
            "channels": n.channels,
            "subscriptions": n.subscriptions,
        })
    };
    json!({
        "node_id": r.node_id,
        "connections": r.connections,
        "channels": r.channels,
        "subscriptions": r.subscriptions,
        "per_shard": r.per_shard,
        "pending_publications": r.pending_publications,
        "cluster": r.cluster.iter().map(node).collect::<Vec<_>>(),
        "cluster_connections": r.cluster_connections,
        "cluster_subscriptions": r.cluster_subscriptions,
    })
}

/// A channel of a `Presence` reply: the count, and for a presence channel every
/// client (`info` as the JSON it is) and the distinct users.
fn channel_presence(c: &pb::ChannelPresence) -> serde_json::Value {
    let mut v = json!({"channel": c.channel, "subscribers": c.subscribers});
    if c.cluster {
        let clients: Vec<serde_json::Value> = c
            .clients
            .iter()
            .map(|cl| {
                let mut o = json!({"conn": cl.conn});
                if !cl.user.is_empty() {
                    o["user"] = json!(cl.user);
                }
                if let Ok(info) = serde_json::from_str::<serde_json::Value>(&cl.info) {
                    o["info"] = info;
                }
                o
            })
            .collect();
        v["clients"] = json!(clients);
        v["users"] = json!(c.users);
    }
    v
}
