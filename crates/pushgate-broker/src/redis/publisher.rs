//! The publisher task: one connection per primary ([`Pool`]: one for standalone and
//! Sentinel, one per master on a Redis Cluster), batches of commands, one round trip
//! each.
//!
//! It blocks for the first queued request, then takes what else is queued (up to
//! [`MAX_BATCH`]), writes every command of the batch in one write per primary and
//! reads the replies in order. Each publication Redis took is then handed to this node's shards
//! in queue order, so publications from one publisher reach every node in the order
//! they were submitted.
//!
//! Every round trip must complete within `redis_timeout_ms`, and while idle the task
//! sends a `PING` every half timeout (at most every second), so a Redis that stops
//! answering (paused, overloaded, a network partition) takes the broker down within
//! about one timeout. When a round trip fails, the connection is dropped: requests
//! whose commands were written are answered [`Uncertain`] (Redis may have run them,
//! and may still), and every request that arrives until the connection is back is
//! refused ([`Unavailable`]: delivered nowhere). On a Redis Cluster only the failed
//! master's connection is dropped: the others serve on, and the slot map is read
//! again.

use std::sync::Arc;
use std::time::Duration;

use pushgate_hub::Hub;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::conn::Dialer;
use super::request::{Ctx, ErrorCounters, Request};
use super::resp::{self, Value};
use super::router::{Pool, Reply, Scripts};
use super::script::{self, Shas};
use super::topology;
use super::{Backoff, Settings, State};
use crate::control::NodeStats;
use crate::error::{Unavailable, Uncertain};
use crate::wire::Keys;

/// Most requests written in one round trip.
const MAX_BATCH: usize = 512;
/// How often this node reports its counts for cluster stats.
const REPORT_EVERY: Duration = Duration::from_secs(2);
/// A node that has not reported for this long is left out of cluster stats.
const REPORT_STALE_MS: u64 = 10_000;
/// A Redis Cluster's slot map is read again this often, whatever happens.
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// ...and after a `MOVED` or a failed node, at most this often.
const REFRESH_MIN: Duration = Duration::from_millis(100);

struct Metrics {
    published: metrics::Counter,
    round_trips: metrics::Counter,
    reconnects: metrics::Counter,
}

pub(crate) async fn run(
    hub: Hub,
    dialer: Dialer,
    keys: Keys,
    settings: Settings,
    state: Arc<State>,
    mut rx: mpsc::Receiver<Request>,
    stop: CancellationToken,
) {
    let m = Metrics {
        published: metrics::counter!("pushgate_broker_published_total"),
        round_trips: metrics::counter!("pushgate_broker_round_trips_total"),
        reconnects: metrics::counter!("pushgate_broker_reconnects_total", "connection" => "publisher"),
    };
    let errors = &state.errors;
    let node = hub.config().node_id.clone();
    let mut backoff = Backoff::new();
    let mut pool = Pool::new(dialer, Scripts::new(&script::ALL));
    let shas = Shas::computed();
    let mut up = false;
    let mut ever_up = false;
    let mut refreshed = Instant::now();
    let mut report = tokio::time::interval(REPORT_EVERY);
    let mut probe = tokio::time::interval(settings.probe_every());
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    loop {
        // A Redis Cluster's slot map is read again after a MOVED or a failed node (at
        // most every REFRESH_MIN), and every REFRESH_EVERY in any case.
        let due = pool.topology.is_none()
            || (pool.is_cluster()
                && ((pool.stale && refreshed.elapsed() >= REFRESH_MIN)
                    || refreshed.elapsed() >= REFRESH_EVERY));
        if due {
            refreshed = Instant::now();
            match pool.refresh().await {
                Ok(()) if !up => {
                    up = true;
                    backoff.reset();
                    if ever_up {
                        m.reconnects.increment(1);
                    }
                    ever_up = true;
                    let nodes = pool.topology.as_ref().map(|t| t.nodes().join(","));
                    tracing::info!(
                        nodes = nodes.unwrap_or_default(),
                        "broker publisher connected to redis"
                    );
                    state.set_publisher(true, None);
                    batch.push(Request::Report);
                }
                Ok(()) => {}
                // No node of the deployment answers (a cluster's known masters and
                // seeds included): down until one does.
                Err(e) => {
                    up = false;
                    pool.reset();
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
                                Some(r) => r.fail(&why, errors),
                                None => return,
                            },
                        }
                    }
                    continue;
                }
            }
        }
        if batch.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => {
                    leave(&mut pool, &keys, &node).await;
                    return;
                }
                _ = report.tick() => batch.push(Request::Report),
                _ = probe.tick() => batch.push(Request::Ping),
                r = rx.recv() => match r {
                    Some(r) => batch.push(r),
                    None => return,
                },
                // Nothing is expected while idle: this notices a Redis that went away
                // before a publication finds out the hard way.
                (addr, r) = pool.idle_read() => {
                    let why = match r {
                        Err(e) => Unavailable::lost(e),
                        Ok(v) => Unavailable::Unexpected(v),
                    };
                    tracing::warn!(error = %why, %addr, "broker publisher");
                    if pool.is_cluster() {
                        pool.drop_conn(&addr);
                    } else {
                        up = false;
                        pool.reset();
                        state.set_publisher(false, Some(why));
                    }
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
        let mut cmds = Vec::with_capacity(batch.len());
        let mut counts = Vec::with_capacity(batch.len());
        {
            let ctx = Ctx {
                keys: &keys,
                hub: &hub,
                shas: &shas,
                idempotency_window: settings.idempotency_window,
            };
            for r in &batch {
                let before = cmds.len();
                r.encode(&ctx, &mut cmds);
                counts.push(cmds.len() - before);
            }
        }
        let mut failed = Vec::new();
        let replies = pool.round_trip(&cmds, &mut failed).await;
        m.round_trips.increment(1);
        let mut replies = replies.into_iter();
        let mut probe_failed = None;
        for (r, n) in batch.drain(..).zip(counts) {
            if let Request::Publish(p) = &r {
                m.published.increment(p.cmds.len() as u64);
            }
            let part: Vec<Reply> = replies.by_ref().take(n).collect();
            // An error to a probe or a report (LOADING, BUSY...) means Redis
            // cannot serve now.
            if let Some(v @ Value::Error(_)) = settle(r, part, &hub, errors).await {
                probe_failed = Some(v);
            }
        }
        let down = match (failed.into_iter().next(), probe_failed) {
            (Some((addr, why)), _) => {
                tracing::warn!(error = %why, %addr, "broker publisher: a redis node failed");
                Some(why)
            }
            (None, Some(v)) => {
                let why = Unavailable::Unexpected(v);
                tracing::warn!(error = %why, "broker publisher");
                Some(why)
            }
            (None, None) => None,
        };
        // A cluster serves on with its other masters (the failed one was dropped and
        // the slot map is read again); a single primary takes the broker down.
        if let Some(why) = down.filter(|_| !pool.is_cluster()) {
            up = false;
            pool.reset();
            state.set_publisher(false, Some(why));
        }
    }
}

/// Answers one request from what became of its commands: Redis's answers, or
/// refused (none was sent), or uncertain (one may have run). Returns the answer to a
/// probe or report.
async fn settle(r: Request, part: Vec<Reply>, hub: &Hub, errors: &ErrorCounters) -> Option<Value> {
    let lost = part.iter().find_map(|p| match p {
        Reply::Lost(u) => Some(u.clone()),
        _ => None,
    });
    let not_sent = part.iter().find_map(|p| match p {
        Reply::NotSent(u) => Some(u.clone()),
        _ => None,
    });
    let got = part.iter().filter(|p| matches!(p, Reply::Got(_))).count();
    match (lost, not_sent) {
        (Some(why), _) => r.fail_uncertain(&why, errors),
        (None, Some(why)) if got == 0 => r.fail(&why, errors),
        (None, Some(why)) => r.fail_uncertain(&Uncertain::Partial(why.to_string()), errors),
        (None, None) => {
            let mut values = part.into_iter().filter_map(|p| match p {
                Reply::Got(v) => Some(v),
                _ => None,
            });
            return r.answer(&mut values, hub, errors).await;
        }
    }
    None
}

/// Removes this node from the stats hash when it stops.
async fn leave(pool: &mut Pool, keys: &Keys, node: &str) {
    let mut out = Vec::new();
    resp::command(
        &mut out,
        [&b"HDEL"[..], keys.nodes().as_bytes(), node.as_bytes()],
    );
    pool.send_one(topology::slot(keys.nodes().as_bytes()), &out)
        .await;
}

/// Live nodes from the stats hash: `node -> "<unix ms> <conns> <channels> <subs>"`.
pub(crate) fn parse_stats(items: &[Value]) -> Vec<NodeStats> {
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

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

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
