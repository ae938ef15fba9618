//! The publisher task: one connection, batches of `SPUBLISH`, one round trip each.
//!
//! It blocks for the first queued request, then takes what else is queued (up to
//! [`MAX_BATCH`]), writes every command of the batch in one write and reads the
//! replies in order. Each publication Redis took is then handed to this node's shards
//! in queue order, so publications from one publisher reach every node in the order
//! they were submitted. If the connection fails, every request of the batch is
//! answered `Unavailable`, and so is every request that arrives until it is back.

use std::time::Duration;

use bytes::Bytes;
use pushgate_hub::{Hub, Publication, Submitted};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, ConnError, Endpoint};
use super::resp::{self, Value};
use super::{Backoff, State};
use crate::control::NodeStats;
use crate::error::{BrokerError, Unavailable};
use crate::local::node_stats;
use crate::wire::Keys;

/// Most requests written in one round trip.
const MAX_BATCH: usize = 512;
/// A batch whose replies do not all arrive within this time fails the connection.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often this node reports its counts for cluster stats.
const REPORT_EVERY: Duration = Duration::from_secs(2);
/// A node that has not reported for this long is left out of cluster stats.
const REPORT_STALE_MS: u64 = 10_000;

/// Nodes that took a publication, and this node's part of it once its shards took it.
pub(crate) type PublishOutcome = Result<(u32, Option<Submitted>), BrokerError>;
pub(crate) type PublishReply = oneshot::Sender<PublishOutcome>;

/// How the nodes that took a publication are counted from the `SPUBLISH` replies.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    /// The largest reply: every node follows the same broadcast or channel key.
    Max,
    /// The sum of the replies plus this many (each node key has one subscriber;
    /// this node is counted directly).
    Sum(u32),
}

pub(crate) enum Request {
    Publish {
        bus: Vec<(String, Bytes)>,
        count: Count,
        local: Option<Publication>,
        source: &'static str,
        reply: PublishReply,
    },
    Stats {
        reply: oneshot::Sender<Result<Vec<NodeStats>, BrokerError>>,
    },
    /// This node's counts, for the cluster stats hash (no reply).
    Report,
}

impl Request {
    fn fail(self, why: &Unavailable) {
        let e = || BrokerError::Unavailable(why.clone());
        match self {
            Request::Publish { reply, .. } => drop(reply.send(Err(e()))),
            Request::Stats { reply } => drop(reply.send(Err(e()))),
            Request::Report => {}
        }
    }
}

struct Metrics {
    published: metrics::Counter,
    round_trips: metrics::Counter,
    errors: metrics::Counter,
    reconnects: metrics::Counter,
}

pub(crate) async fn run(
    hub: Hub,
    endpoint: Endpoint,
    keys: Keys,
    state: std::sync::Arc<State>,
    mut rx: mpsc::Receiver<Request>,
    stop: CancellationToken,
) {
    let m = Metrics {
        published: metrics::counter!("pushgate_broker_published_total"),
        round_trips: metrics::counter!("pushgate_broker_round_trips_total"),
        errors: metrics::counter!("pushgate_broker_publish_errors_total"),
        reconnects: metrics::counter!("pushgate_broker_reconnects_total", "connection" => "publisher"),
    };
    let node = hub.config().node_id.clone();
    let mut backoff = Backoff::new();
    let mut conn: Option<Conn> = None;
    let mut ever_up = false;
    let mut report = tokio::time::interval(REPORT_EVERY);
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    loop {
        if conn.is_none() {
            match Conn::open(&endpoint).await {
                Ok(c) => {
                    conn = Some(c);
                    backoff.reset();
                    if ever_up {
                        m.reconnects.increment(1);
                    }
                    ever_up = true;
                    tracing::info!(addr = %endpoint.addr, "broker publisher connected to redis");
                    state.set_publisher(true, None);
                    batch.push(Request::Report);
                }
                Err(e) => {
                    let why = Unavailable::connect(e);
                    tracing::warn!(error = %why, "broker publisher cannot reach redis; retrying");
                    state.set_publisher(false, Some(why.clone()));
                    // Refuse what arrives while waiting, rather than hold it.
                    let pause = tokio::time::sleep(backoff.next());
                    tokio::pin!(pause);
                    loop {
                        tokio::select! {
                            _ = &mut pause => break,
                            _ = stop.cancelled() => return,
                            r = rx.recv() => match r {
                                Some(r) => { m.errors.increment(1); r.fail(&why) }
                                None => return,
                            },
                        }
                    }
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        if batch.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => {
                    leave(c, &keys, &node).await;
                    return;
                }
                _ = report.tick() => batch.push(Request::Report),
                r = rx.recv() => match r {
                    Some(r) => batch.push(r),
                    None => return,
                },
                // Nothing is expected while idle: this notices a Redis that went away
                // before a publication finds out the hard way.
                r = c.read() => {
                    let why = match r {
                        Err(e) => Unavailable::lost(e),
                        Ok(v) => Unavailable::Unexpected(v),
                    };
                    tracing::warn!(error = %why, "broker publisher");
                    state.set_publisher(false, Some(why));
                    conn = None;
                    continue;
                }
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        match round_trip(c, &batch, &keys, &hub).await {
            Ok(replies) => {
                m.round_trips.increment(1);
                dispatch(&hub, &m, std::mem::take(&mut batch), replies).await;
            }
            Err(e) => {
                let why = Unavailable::lost(e);
                tracing::warn!(error = %why, "broker publisher");
                state.set_publisher(false, Some(why.clone()));
                conn = None;
                for r in batch.drain(..) {
                    m.errors.increment(1);
                    r.fail(&why);
                }
            }
        }
    }
}

/// Writes every command of the batch at once and reads all the replies.
async fn round_trip(
    c: &mut Conn,
    batch: &[Request],
    keys: &Keys,
    hub: &Hub,
) -> Result<Vec<Value>, ConnError> {
    let mut out = Vec::with_capacity(batch.len() * 160);
    let mut expected = 0;
    for r in batch {
        match r {
            Request::Publish { bus, .. } => {
                for (key, body) in bus {
                    resp::command(&mut out, [&b"SPUBLISH"[..], key.as_bytes(), body]);
                    expected += 1;
                }
            }
            Request::Stats { .. } => {
                resp::command(&mut out, [&b"HGETALL"[..], keys.nodes().as_bytes()]);
                expected += 1;
            }
            Request::Report => {
                let s = node_stats(hub);
                let v = format!(
                    "{} {} {} {}",
                    now_ms(),
                    s.connections,
                    s.channels,
                    s.subscriptions
                );
                resp::command(
                    &mut out,
                    [
                        &b"HSET"[..],
                        keys.nodes().as_bytes(),
                        s.node.as_bytes(),
                        v.as_bytes(),
                    ],
                );
                expected += 1;
            }
        }
    }
    let io = async {
        c.stream.write_all(&out).await?;
        let mut replies = Vec::with_capacity(expected);
        for _ in 0..expected {
            replies.push(c.read().await?);
        }
        Ok(replies)
    };
    tokio::time::timeout(REPLY_TIMEOUT, io)
        .await
        .map_err(|_| ConnError::Timeout("redis".into(), REPLY_TIMEOUT))?
}

/// Answers each request of a batch from its replies, delivering publications here.
async fn dispatch(hub: &Hub, m: &Metrics, batch: Vec<Request>, replies: Vec<Value>) {
    let mut replies = replies.into_iter();
    for r in batch {
        match r {
            Request::Publish {
                bus,
                count,
                local,
                source,
                reply,
            } => {
                let mut counts = Vec::with_capacity(bus.len());
                let mut error = None;
                for v in replies.by_ref().take(bus.len()) {
                    match v {
                        Value::Int(n) => counts.push(n.max(0) as u32),
                        Value::Error(e) => error = Some(Unavailable::Refused(e)),
                        other => error = Some(Unavailable::Unexpected(other)),
                    }
                }
                if let Some(e) = error {
                    m.errors.increment(1);
                    let _ = reply.send(Err(e.into()));
                    continue;
                }
                m.published.increment(bus.len() as u64);
                let nodes = match count {
                    Count::Max => counts.iter().copied().max().unwrap_or(0),
                    Count::Sum(here) => counts.iter().sum::<u32>() + here,
                };
                let submitted = match local {
                    None => Ok(None),
                    Some(p) => hub.submit(p, source).await.map(Some),
                };
                let _ = reply.send(submitted.map(|s| (nodes, s)).map_err(BrokerError::from));
            }
            Request::Stats { reply } => {
                let v = replies.next();
                let _ = reply.send(match v {
                    Some(Value::Array(Some(items))) => Ok(parse_stats(&items)),
                    // A missing reply (never expected: one per command) reads as nil.
                    other => {
                        Err(Unavailable::Unexpected(other.unwrap_or(Value::Bulk(None))).into())
                    }
                });
            }
            Request::Report => {
                replies.next();
            }
        }
    }
}

/// Live nodes from the stats hash: `node -> "<unix ms> <conns> <channels> <subs>"`.
fn parse_stats(items: &[Value]) -> Vec<NodeStats> {
    let now = now_ms();
    let mut out: Vec<NodeStats> = items
        .chunks(2)
        .filter_map(|kv| {
            let node = String::from_utf8_lossy(kv.first()?.as_bytes()?).into_owned();
            let v = String::from_utf8_lossy(kv.get(1)?.as_bytes()?).into_owned();
            let n: Vec<u64> = v.split(' ').filter_map(|x| x.parse().ok()).collect();
            let [at, connections, channels, subscriptions] = n[..] else {
                return None;
            };
            (now.saturating_sub(at) <= REPORT_STALE_MS).then_some(NodeStats {
                node,
                connections,
                channels,
                subscriptions,
            })
        })
        .collect();
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out
}

/// Removes this node from the stats hash when it stops.
async fn leave(c: &mut Conn, keys: &Keys, node: &str) {
    let mut out = Vec::new();
    resp::command(
        &mut out,
        [&b"HDEL"[..], keys.nodes().as_bytes(), node.as_bytes()],
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        c.stream.write_all(&out).await?;
        c.read().await
    })
    .await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_and_malformed_stats_are_left_out() {
        let b = |s: String| Value::Bulk(Some(Bytes::from(s)));
        let now = now_ms();
        let items = vec![
            b("n2".into()),
            b(format!("{now} 5 2 7")),
            b("n1".into()),
            b(format!("{} 1 1 1", now - 60_000)),
            b("n3".into()),
            b("garbage".into()),
        ];
        let s = parse_stats(&items);
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].node.as_str(), s[0].connections, s[0].subscriptions),
            ("n2", 5, 7)
        );
    }
}
