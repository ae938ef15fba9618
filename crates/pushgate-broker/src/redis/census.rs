//! The census over the bus: a scatter/gather of channel counts (docs/cluster.md,
//! "Census").
//!
//! The asker registers a query id, then `SPUBLISH`es the query on the broadcast key
//! `<prefix>:{all}`, which every node follows: Redis's reply is the number of nodes
//! that heard it (on a Redis Cluster too, the key's one slot has every node's
//! subscription). Each node that hears it, the asker included, counts its own
//! subscribers in a task of its own (never in the subscriber's loop) and answers:
//! another node on the asker's node key `<prefix>:node:{<asker>}`, the asker to
//! itself without Redis. The asker waits until as many answers as nodes heard the
//! query arrived (its own among them), for at most the broker's timeout; a node
//! that does not answer makes the census fail (`CensusError::Incomplete`), never a
//! smaller sum. A dead node's subscription went with its connection, so Redis does
//! not count it: it is not waited for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;
use pushgate_hub::Hub;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::request::{BusCmd, Count, Publish, Request};
use crate::census::wire::{encode_answer, encode_query, Msg};
use crate::census::{self, Census, CensusError, CensusQuery, Counts, Tally, MAX_ANSWER};
use crate::error::BrokerError;
use crate::wire::{KeyKind, Keys};

type Answers = mpsc::UnboundedSender<(String, Counts)>;

/// This node's census queries in flight, and its answers to the others'.
pub(crate) struct Desk {
    hub: Hub,
    keys: Keys,
    queue: mpsc::Sender<Request>,
    /// How long the asker waits for the answers once Redis took the query.
    timeout: Duration,
    next: AtomicU64,
    /// Where each query in flight collects its answers, by query id.
    waiting: parking_lot::Mutex<AHashMap<u64, Answers>>,
    m: Metrics,
}

struct Metrics {
    complete: metrics::Counter,
    incomplete: metrics::Counter,
    refused: metrics::Counter,
    too_many: metrics::Counter,
    missing: metrics::Counter,
    answered: metrics::Counter,
    late: metrics::Counter,
}

impl Metrics {
    fn new() -> Metrics {
        let outcome =
            |o: &'static str| metrics::counter!("pushgate_broker_census_total", "outcome" => o);
        Metrics {
            complete: outcome("complete"),
            incomplete: outcome("incomplete"),
            refused: outcome("refused"),
            too_many: outcome("too_many"),
            missing: metrics::counter!("pushgate_broker_census_missing_total"),
            answered: metrics::counter!("pushgate_broker_census_answers_total"),
            late: metrics::counter!("pushgate_broker_census_late_total"),
        }
    }

    fn count(&self, r: &Result<Census, CensusError>) {
        match r {
            Ok(_) => self.complete.increment(1),
            Err(CensusError::Incomplete { missing, .. }) => {
                self.incomplete.increment(1);
                self.missing.increment(u64::from(*missing));
            }
            Err(CensusError::TooMany { .. }) => self.too_many.increment(1),
            Err(_) => self.refused.increment(1),
        }
    }
}

/// Removes a query's entry however its asker ends (answered, timed out, dropped).
struct Registered<'a>(&'a Desk, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.waiting.lock().remove(&self.1);
    }
}

impl Desk {
    pub(crate) fn new(
        hub: Hub,
        keys: Keys,
        queue: mpsc::Sender<Request>,
        timeout: Duration,
    ) -> Arc<Desk> {
        // Ids start from the clock, so that a node restarted under the same id does
        // not take a late answer to its former life's query for a new one.
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Arc::new(Desk {
            hub,
            keys,
            queue,
            timeout,
            next: AtomicU64::new(start),
            waiting: parking_lot::Mutex::new(AHashMap::new()),
            m: Metrics::new(),
        })
    }

    /// Asks every node for its counts and sums them (the broker checked it is up).
    pub(crate) async fn ask(&self, q: CensusQuery) -> Result<Census, CensusError> {
        let r = self.gather(q).await;
        self.count(&r);
        r
    }

    /// Counts a census's outcome in the metrics (the broker's refusals too).
    pub(crate) fn count(&self, r: &Result<Census, CensusError>) {
        self.m.count(r);
    }

    async fn gather(&self, q: CensusQuery) -> Result<Census, CensusError> {
        let node = self.hub.config().node_id.as_str();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.waiting.lock().insert(id, tx);
        let _registered = Registered(self, id);
        let (reply, taken) = oneshot::channel();
        let query = Publish {
            cmds: vec![BusCmd::Plain {
                key: self.keys.all(),
                body: encode_query(node, id, &q),
            }],
            count: Count::Max,
            local: None,
            source: "census",
            reply,
        };
        self.queue
            .send(Request::Publish(query))
            .await
            .map_err(BrokerError::stopped)?;
        let heard = taken.await.map_err(BrokerError::stopped)??.nodes;
        let deadline = Instant::now() + self.timeout;
        let mut tally = Tally::default();
        while tally.messages < heard || !tally.has(node) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((from, counts))) => tally.add(&from, counts),
                // The sender lives in `waiting` until this returns.
                Ok(None) | Err(_) => break,
            }
        }
        if tally.messages < heard {
            return Err(CensusError::Incomplete {
                expected: heard,
                missing: heard - tally.messages,
                waited: self.timeout,
            });
        }
        if !tally.has(node) {
            return Err(CensusError::NotHeard);
        }
        tally.finish()
    }

    /// A census message from the bus: a query is counted and answered in a task of
    /// its own; an answer goes to the query waiting for it (if it still waits).
    pub(crate) fn receive(self: &Arc<Self>, key: &KeyKind<'_>, origin: String, msg: Msg) {
        let node = self.hub.config().node_id.as_str();
        match (msg, key) {
            (Msg::Query { id, query }, KeyKind::All) => {
                let desk = self.clone();
                tokio::spawn(async move { desk.answer(origin, id, query).await });
            }
            (Msg::Answer { id, counts }, KeyKind::Node(n)) if *n == node => {
                self.take(id, origin, counts);
            }
            // On a key it does not belong to: not ours to act on.
            _ => {}
        }
    }

    async fn answer(&self, asker: String, id: u64, query: CensusQuery) {
        let counts = census::local(&self.hub, &query, Some(MAX_ANSWER));
        let node = self.hub.config().node_id.clone();
        if asker == node {
            self.take(id, node, counts);
            return;
        }
        self.m.answered.increment(1);
        let (reply, _) = oneshot::channel();
        let answer = Publish {
            cmds: vec![BusCmd::Plain {
                key: self.keys.node(&asker),
                body: encode_answer(&node, id, &counts),
            }],
            count: Count::Sum(0),
            local: None,
            source: "census",
            reply,
        };
        // Refused while Redis is down: the asker then misses this answer and says so.
        let _ = self.queue.send(Request::Publish(answer)).await;
    }

    fn take(&self, id: u64, from: String, counts: Counts) {
        let sent = match self.waiting.lock().get(&id) {
            Some(tx) => tx.send((from, counts)).is_ok(),
            None => false,
        };
        if !sent {
            self.m.late.increment(1);
        }
    }
}
