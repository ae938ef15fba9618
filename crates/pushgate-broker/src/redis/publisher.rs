//! The publisher task: one connection, batches of commands, one round trip each.
//!
//! It blocks for the first queued request, then takes what else is queued (up to
//! [`MAX_BATCH`]), writes every command of the batch in one write and reads the
//! replies in order. Each publication Redis took is then handed to this node's shards
//! in queue order, so publications from one publisher reach every node in the order
//! they were submitted.
//!
//! Every round trip must complete within `redis_timeout_ms`, and while idle the task
//! sends a `PING` every half timeout (at most every second), so a Redis that stops
//! answering (paused, overloaded, a network partition) takes the broker down within
//! about one timeout. When a round trip fails, the connection is dropped: requests
//! whose commands were written are answered [`Uncertain`] (Redis may have run them,
//! and may still), and every request that arrives until the connection is back is
//! refused ([`Unavailable`]: delivered nowhere).

use std::sync::Arc;
use std::time::Duration;

use pushgate_hub::Hub;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, ConnError, Endpoint};
use super::request::{Ctx, Request};
use super::resp::{self, Value};
use super::script::{self, Shas};
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

struct Metrics {
    published: metrics::Counter,
    round_trips: metrics::Counter,
    reconnects: metrics::Counter,
}

pub(crate) async fn run(
    hub: Hub,
    endpoint: Endpoint,
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
    let mut conn: Option<(Conn, Shas)> = None;
    let mut ever_up = false;
    let mut report = tokio::time::interval(REPORT_EVERY);
    let mut probe = tokio::time::interval(settings.probe_every());
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
    loop {
        if conn.is_none() {
            match connect(&endpoint, settings.timeout).await {
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
                                Some(r) => r.fail(&why, errors),
                                None => return,
                            },
                        }
                    }
                    continue;
                }
            }
        }
        let (c, shas) = conn.as_mut().expect("connected above");
        if batch.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => {
                    leave(c, &keys, &node).await;
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
        let io = round_trip(c, shas, &batch, &keys, &hub, &settings);
        let result = tokio::time::timeout(settings.timeout, io)
            .await
            .unwrap_or(Err(Uncertain::Timeout(settings.timeout)));
        match result {
            Ok(replies) => {
                m.round_trips.increment(1);
                let mut replies = replies.into_iter();
                let mut probe_failed = None;
                for r in batch.drain(..) {
                    if let Request::Publish(p) = &r {
                        m.published.increment(p.cmds.len() as u64);
                    }
                    // An error to a probe or a report (LOADING, BUSY...) means Redis
                    // cannot serve now.
                    if let Some(v @ Value::Error(_)) = r.answer(&mut replies, &hub, errors).await {
                        probe_failed = Some(v);
                    }
                }
                if let Some(v) = probe_failed {
                    let why = Unavailable::Unexpected(v);
                    tracing::warn!(error = %why, "broker publisher");
                    state.set_publisher(false, Some(why));
                    conn = None;
                }
            }
            Err(why) => {
                tracing::warn!(error = %why, "broker publisher: outcome of a batch unknown");
                let down = match &why {
                    Uncertain::Timeout(d) => Unavailable::Stalled(*d),
                    Uncertain::Lost(e) => Unavailable::Lost(e.clone()),
                    Uncertain::Partial(s) => Unavailable::Refused(s.clone()),
                };
                state.set_publisher(false, Some(down));
                conn = None;
                for r in batch.drain(..) {
                    r.fail_uncertain(&why, errors);
                }
            }
        }
    }
}

/// Opens the connection (it answers `PING` within the timeout) and loads the scripts.
async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<(Conn, Shas), ConnError> {
    let mut c = Conn::open(endpoint, timeout).await?;
    let load = async {
        let replies = exchange(&mut c, &script::load()).await?;
        script::shas(&replies)
            .ok_or_else(|| ConnError::Refused(format!("SCRIPT LOAD: {replies:?}")))
    };
    let shas = tokio::time::timeout(timeout, load)
        .await
        .map_err(|_| ConnError::Timeout(endpoint.addr.clone(), timeout))??;
    Ok((c, shas))
}

/// Writes every command of the batch at once and reads all the replies. Commands
/// Redis answers `NOSCRIPT` (someone ran `SCRIPT FLUSH`) were not run: the scripts are
/// loaded again and those commands sent again, in order.
async fn round_trip(
    c: &mut Conn,
    shas: &mut Shas,
    batch: &[Request],
    keys: &Keys,
    hub: &Hub,
    settings: &Settings,
) -> Result<Vec<Value>, Uncertain> {
    let encode = |shas: &Shas| {
        let ctx = Ctx {
            keys,
            hub,
            shas,
            idempotency_window: settings.idempotency_window,
        };
        let mut cmds = Vec::with_capacity(batch.len());
        for r in batch {
            r.encode(&ctx, &mut cmds);
        }
        cmds
    };
    let lost = |e| Uncertain::Lost(Arc::new(e));
    let mut replies = exchange(c, &encode(shas)).await.map_err(lost)?;
    let again: Vec<usize> = (0..replies.len())
        .filter(|&i| script::is_noscript(&replies[i]))
        .collect();
    if !again.is_empty() {
        let loaded = exchange(c, &script::load()).await.map_err(lost)?;
        *shas = script::shas(&loaded)
            .ok_or_else(|| Uncertain::Partial(format!("SCRIPT LOAD: {loaded:?}")))?;
        let cmds = encode(shas);
        let retried: Vec<Vec<u8>> = again.iter().map(|&i| cmds[i].clone()).collect();
        let answers = exchange(c, &retried).await.map_err(lost)?;
        for (i, v) in again.into_iter().zip(answers) {
            replies[i] = v;
        }
    }
    Ok(replies)
}

/// Writes commands (one per buffer) at once and reads their replies.
async fn exchange(c: &mut Conn, cmds: &[Vec<u8>]) -> Result<Vec<Value>, ConnError> {
    let mut out = Vec::with_capacity(cmds.iter().map(Vec::len).sum());
    for cmd in cmds {
        out.extend_from_slice(cmd);
    }
    c.stream.write_all(&out).await?;
    let mut replies = Vec::with_capacity(cmds.len());
    for _ in 0..cmds.len() {
        replies.push(c.read().await?);
    }
    Ok(replies)
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
