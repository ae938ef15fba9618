//! What the publisher task is asked to do, the Redis commands each request becomes,
//! and how each request is answered from its replies.

use std::time::Duration;

use bytes::Bytes;
use pushgate_hub::{HistoryPage, HistoryRule, Hub, Publication, Snapshot, Submitted};
use pushgate_protocol::{Payload, Position};
use tokio::sync::oneshot;

use super::resp::{self, Value};
use super::router::Routed;
use super::script::{self, Shas};
use super::topology;
use crate::control::NodeStats;
use crate::error::{BrokerError, Unavailable, Uncertain};
use crate::local::node_stats;
use crate::wire::Keys;

/// How the nodes that took a publication are counted from the replies.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    /// The largest reply: every node follows the same broadcast or channel key.
    Max,
    /// The sum of the replies plus this many (each node key has one subscriber;
    /// this node is counted directly).
    Sum(u32),
}

/// One bus command of a publication.
pub(crate) enum BusCmd {
    /// `SPUBLISH key body`.
    Plain { key: String, body: Bytes },
    /// The keyed script: `SPUBLISH` unless the idempotency key was seen.
    Keyed {
        key: String,
        body: Bytes,
        idempotency: String,
    },
    /// The history script: an offset, the stream entry and `SPUBLISH` at once.
    History {
        channel: String,
        head: Bytes,
        payload: Payload,
        rule: HistoryRule,
        idempotency: Option<String>,
    },
}

/// A publication Redis took: the nodes that took it, its positions, and this node's
/// part once handed to its shards.
pub(crate) struct Taken {
    pub(crate) nodes: u32,
    pub(crate) positions: Vec<(String, Position)>,
    pub(crate) duplicate: bool,
    pub(crate) local: Option<Submitted>,
}

pub(crate) type PublishOutcome = Result<Taken, BrokerError>;
pub(crate) type PublishReply = oneshot::Sender<PublishOutcome>;
pub(crate) type SyncReply = oneshot::Sender<Result<Snapshot, BrokerError>>;

/// A publication for the publisher task.
pub(crate) struct Publish {
    pub(crate) cmds: Vec<BusCmd>,
    pub(crate) count: Count,
    /// This node's part, delivered here once Redis took the publication.
    pub(crate) local: Option<Publication>,
    pub(crate) source: &'static str,
    pub(crate) reply: PublishReply,
}

pub(crate) enum Request {
    Publish(Publish),
    /// Read a history channel's stream from the position this node has.
    Sync {
        channel: String,
        have: Option<(String, u64)>,
        rule: HistoryRule,
        reply: SyncReply,
    },
    /// Read a page of a history channel's stream (the `History` calls).
    Read {
        channel: String,
        since: Option<u64>,
        limit: usize,
        rule: HistoryRule,
        reply: oneshot::Sender<Result<HistoryPage, BrokerError>>,
    },
    Stats {
        reply: oneshot::Sender<Result<Vec<NodeStats>, BrokerError>>,
    },
    /// This node's counts, for the cluster stats hash (no reply).
    Report,
    /// A probe: Redis must answer within the timeout (no reply).
    Ping,
}

/// What encoding needs.
pub(crate) struct Ctx<'a> {
    pub(crate) keys: &'a Keys,
    pub(crate) hub: &'a Hub,
    pub(crate) shas: &'a Shas,
    pub(crate) idempotency_window: Duration,
}

/// Publication errors counted in metrics, by outcome.
pub(crate) struct ErrorCounters {
    pub(crate) refused: metrics::Counter,
    pub(crate) uncertain: metrics::Counter,
}

impl ErrorCounters {
    pub(crate) fn new() -> ErrorCounters {
        let c = |o: &'static str| metrics::counter!("pushgate_broker_publish_errors_total", "outcome" => o);
        ErrorCounters {
            refused: c("refused"),
            uncertain: c("uncertain"),
        }
    }

    pub(crate) fn count(&self, e: &BrokerError) {
        match e {
            BrokerError::Uncertain(_) => self.uncertain.increment(1),
            BrokerError::Unavailable(_) => self.refused.increment(1),
            BrokerError::Publish(_) => {}
        }
    }
}

impl Request {
    /// Appends the request's commands, one buffer each, with the slot of the key
    /// each touches (its node on a Redis Cluster).
    pub(crate) fn encode(&self, ctx: &Ctx<'_>, out: &mut Vec<Routed>) {
        let mut one = |key: &str, f: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = Vec::new();
            f(&mut bytes);
            out.push(Routed {
                slot: topology::slot(key.as_bytes()),
                bytes,
            });
        };
        match self {
            Request::Publish(p) => {
                for c in &p.cmds {
                    let key = match c {
                        BusCmd::Plain { key, .. } | BusCmd::Keyed { key, .. } => key.clone(),
                        BusCmd::History { channel, .. } => ctx.keys.channel(channel),
                    };
                    one(&key, &|b| encode_cmd(b, ctx, c));
                }
            }
            Request::Sync {
                channel,
                have,
                rule,
                ..
            } => {
                let candidate = new_epoch(ctx.hub);
                let have = have.as_ref().map(|(e, o)| (e.as_str(), *o));
                one(&ctx.keys.channel(channel), &|b| {
                    script::call_sync(b, ctx.shas, ctx.keys, channel, have, &candidate, rule)
                });
            }
            Request::Read {
                channel,
                since,
                limit,
                rule,
                ..
            } => {
                let candidate = new_epoch(ctx.hub);
                one(&ctx.keys.channel(channel), &|b| {
                    script::call_read(
                        b, ctx.shas, ctx.keys, channel, *since, *limit, &candidate, rule,
                    )
                });
            }
            Request::Stats { .. } => {
                one(&ctx.keys.nodes(), &|b| {
                    resp::command(b, [&b"HGETALL"[..], ctx.keys.nodes().as_bytes()])
                });
            }
            Request::Report => {
                let s = node_stats(ctx.hub);
                let v = format!(
                    "{} {} {} {}",
                    super::publisher::now_ms(),
                    s.connections,
                    s.channels,
                    s.subscriptions
                );
                one(&ctx.keys.nodes(), &|b| {
                    resp::command(
                        b,
                        [
                            &b"HSET"[..],
                            ctx.keys.nodes().as_bytes(),
                            s.node.as_bytes(),
                            v.as_bytes(),
                        ],
                    )
                });
            }
            // The probe goes where the stats hash is: that node must answer for
            // cluster stats anyway.
            Request::Ping => one(&ctx.keys.nodes(), &|b| resp::command(b, [&b"PING"[..]])),
        }
    }

    /// Answers the request when its commands never reached Redis.
    pub(crate) fn fail(self, why: &Unavailable, m: &ErrorCounters) {
        let e = || BrokerError::Unavailable(why.clone());
        match self {
            Request::Publish(p) => {
                m.refused.increment(1);
                drop(p.reply.send(Err(e())));
            }
            Request::Sync { reply, .. } => drop(reply.send(Err(e()))),
            Request::Read { reply, .. } => drop(reply.send(Err(e()))),
            Request::Stats { reply } => drop(reply.send(Err(e()))),
            Request::Report | Request::Ping => {}
        }
    }

    /// Answers the request when its commands were written but their replies did not
    /// come back: a publication may have been delivered.
    pub(crate) fn fail_uncertain(self, why: &Uncertain, m: &ErrorCounters) {
        match self {
            Request::Publish(p) if !p.cmds.is_empty() => {
                m.uncertain.increment(1);
                drop(p.reply.send(Err(BrokerError::Uncertain(why.clone()))));
            }
            // Nothing of it went to Redis: it was not delivered anywhere.
            other => {
                let why = match why {
                    Uncertain::Lost(e) => Unavailable::Lost(e.clone()),
                    Uncertain::Timeout(d) => Unavailable::Stalled(*d),
                    Uncertain::Partial(s) => Unavailable::Refused(s.clone()),
                };
                other.fail(&why, m)
            }
        }
    }

    /// Answers the request from its replies, delivering a publication's local part.
    pub(crate) async fn answer(
        self,
        replies: &mut impl Iterator<Item = Value>,
        hub: &Hub,
        m: &ErrorCounters,
    ) -> Option<Value> {
        match self {
            Request::Publish(p) => {
                let n = p.cmds.len();
                let outcome = taken(&p, replies.by_ref().take(n));
                let outcome = match outcome {
                    Ok(mut t) => match p.local {
                        None => Ok(t),
                        Some(local) => match hub.submit(local, p.source).await {
                            Ok(s) => {
                                t.local = Some(s);
                                Ok(t)
                            }
                            Err(e) => Err(e.into()),
                        },
                    },
                    Err(e) => {
                        m.count(&e);
                        Err(e)
                    }
                };
                let _ = p.reply.send(outcome);
                None
            }
            Request::Sync { reply, .. } => {
                let v = replies.next().unwrap_or(Value::Bulk(None));
                let _ = reply.send(match script::snapshot(&v) {
                    Some(s) => Ok(s),
                    None => Err(unexpected(v).into()),
                });
                None
            }
            Request::Read { reply, .. } => {
                let v = replies.next().unwrap_or(Value::Bulk(None));
                let _ = reply.send(match script::page(&v) {
                    Some(p) => Ok(p),
                    None => Err(unexpected(v).into()),
                });
                None
            }
            Request::Stats { reply } => {
                let v = replies.next();
                let _ = reply.send(match v {
                    Some(Value::Array(Some(items))) => Ok(super::publisher::parse_stats(&items)),
                    // A missing reply (never expected: one per command) reads as nil.
                    other => Err(unexpected(other.unwrap_or(Value::Bulk(None))).into()),
                });
                None
            }
            // Returned: the caller checks the probe's answer.
            Request::Report | Request::Ping => replies.next(),
        }
    }
}

/// A new epoch candidate (used by Redis only when the channel has none).
fn new_epoch(hub: &Hub) -> String {
    hub.history()
        .map_or_else(|| "0".into(), |h| h.new_epoch().to_string())
}

fn encode_cmd(out: &mut Vec<u8>, ctx: &Ctx<'_>, c: &BusCmd) {
    match c {
        BusCmd::Plain { key, body } => {
            resp::command(out, [&b"SPUBLISH"[..], key.as_bytes(), body]);
        }
        BusCmd::Keyed {
            key,
            body,
            idempotency,
        } => script::call_keyed(
            out,
            ctx.shas,
            key,
            body,
            idempotency,
            ctx.idempotency_window,
        ),
        BusCmd::History {
            channel,
            head,
            payload,
            rule,
            idempotency,
        } => {
            let epoch = new_epoch(ctx.hub);
            let idem = idempotency.as_deref().map(|k| (k, ctx.idempotency_window));
            script::call_history(
                out, ctx.shas, ctx.keys, channel, head, payload, &epoch, rule, idem,
            );
        }
    }
}

/// What a publication's replies say: taken (by every key), refused (by every key:
/// delivered nowhere) or partly taken.
fn taken(p: &Publish, replies: impl Iterator<Item = Value>) -> Result<Taken, BrokerError> {
    let mut t = Taken {
        nodes: 0,
        positions: Vec::new(),
        duplicate: false,
        local: None,
    };
    let (mut counts, mut refused) = (Vec::new(), None);
    for (c, v) in p.cmds.iter().zip(replies) {
        match script::published(&v) {
            Some(r) => {
                counts.push(r.receivers);
                t.duplicate |= r.duplicate;
                if let (Some(pos), BusCmd::History { channel, .. }) = (r.position, c) {
                    t.positions.push((channel.clone(), pos));
                }
            }
            None => refused = Some(unexpected(v)),
        }
    }
    if let Some(why) = refused {
        return Err(if counts.is_empty() {
            why.into()
        } else {
            Uncertain::Partial(why.to_string()).into()
        });
    }
    t.nodes = match p.count {
        Count::Max => counts.iter().copied().max().unwrap_or(0),
        Count::Sum(here) => counts.iter().sum::<u32>() + here,
    };
    Ok(t)
}

fn unexpected(v: Value) -> Unavailable {
    match v {
        Value::Error(e) => Unavailable::Refused(e),
        other => Unavailable::Unexpected(other),
    }
}
