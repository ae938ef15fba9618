//! History channels followed through Redis: keeping this node's copy of each stream
//! in step with Redis, for one subscriber connection's life.
//!
//! A history channel's publications reach every node from the bus, in Redis's order,
//! which is offset order, and go to the hub with their positions
//! ([`Hub::submit_at`]). A stream is read from Redis ([`Hub::sync`]):
//!
//! - when Redis confirms the node follows the channel: the first time (the stream is
//!   installed; subscribes wait for it), and again after every reconnect, from the
//!   last offset this node delivered: the gap is filled for the local subscribers, in
//!   order, before anything newer, or they are told `unrecoverable`;
//! - when a publication cannot be placed (another epoch, offsets missing before it);
//! - when a subscribe waits for a stream that is not synced (the hub asks).
//!
//! Publications of a channel that arrive while its stream is being read wait here and
//! are delivered after it, those already in the snapshot dropped as duplicates. A read
//! starts after the subscription is confirmed, so every publication after the
//! snapshot's top arrives on the bus: nothing falls between the two.

use std::time::Duration;

use ahash::AHashMap;
use pushgate_hub::{At, Hub, Snapshot, Synced};
use pushgate_protocol::{ConnId, Payload, Position};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::request::Request;

/// The source label of publications that arrive from the bus.
pub(crate) const SOURCE: &str = "broker";
/// Most publications kept per channel while its stream is read; beyond, they are
/// dropped and the stream is read again afterwards (Redis has them).
const MAX_HELD: usize = 10_000;

/// A history channel's publication from the bus.
pub(crate) struct Positioned {
    pub(crate) position: Position,
    pub(crate) payload: Payload,
    pub(crate) exclude: Option<ConnId>,
}

/// A stream being read, and what arrived meanwhile.
struct Reading {
    id: u64,
    held: Vec<Positioned>,
    /// Some were dropped: read again once this read is applied.
    overflowed: bool,
}

struct Metrics {
    installed: metrics::Counter,
    filled: metrics::Counter,
    unchanged: metrics::Counter,
    reset: metrics::Counter,
    gap_publications: metrics::Counter,
}

/// The history channels of one subscriber connection.
pub(crate) struct Follow {
    hub: Hub,
    queue: mpsc::Sender<Request>,
    reading: AHashMap<String, Reading>,
    next_id: u64,
    replies: JoinSet<(String, u64, Snapshot)>,
    m: Metrics,
}

impl Follow {
    pub(crate) fn new(hub: Hub, queue: mpsc::Sender<Request>) -> Follow {
        let syncs = |r: &'static str| metrics::counter!("pushgate_broker_history_syncs_total", "result" => r);
        Follow {
            hub,
            queue,
            reading: AHashMap::new(),
            next_id: 0,
            replies: JoinSet::new(),
            m: Metrics {
                installed: syncs("installed"),
                filled: syncs("filled"),
                unchanged: syncs("unchanged"),
                reset: syncs("reset"),
                gap_publications: metrics::counter!(
                    "pushgate_broker_history_gap_publications_total"
                ),
            },
        }
    }

    fn is_history(&self, channel: &str) -> bool {
        self.hub.history().is_some_and(|h| h.is_history(channel))
    }

    /// Redis confirmed that this connection follows `channel`: read its stream.
    pub(crate) fn confirmed(&mut self, channel: &str) {
        if self.is_history(channel) {
            self.read(channel);
        }
    }

    /// The connection no longer follows `channel`: what waits for its read is dropped,
    /// and the node's copy of the stream is marked out of date (a later follow reads
    /// it again before anyone subscribes).
    pub(crate) fn unfollowed(&mut self, channel: &str) {
        self.reading.remove(channel);
        if let Some(h) = self.hub.history() {
            h.unfollowed(channel);
        }
    }

    /// The connection that followed `channel` was lost, or Redis unsubscribed it (its
    /// slot moved): a read in flight is dropped; the node's copy stays, so that the
    /// next confirmation fills the gap from the last offset delivered here.
    pub(crate) fn lost(&mut self, channel: &str) {
        self.reading.remove(channel);
    }

    /// A subscribe waits for `channel`'s stream, which the connection follows.
    pub(crate) fn requested(&mut self, channel: &str) {
        if !self.reading.contains_key(channel) {
            self.read(channel);
        }
    }

    /// Whether a read is in flight (then [`Follow::next_read`] has something to wait for).
    pub(crate) fn busy(&self) -> bool {
        !self.replies.is_empty()
    }

    /// A publication of a history channel from the bus.
    pub(crate) async fn deliver(&mut self, channel: &str, p: Positioned) {
        if let Some(r) = self.reading.get_mut(channel) {
            hold(r, p);
            return;
        }
        if self.place(channel, &p).await {
            return;
        }
        self.read(channel);
        if let Some(r) = self.reading.get_mut(channel) {
            hold(r, p);
        }
    }

    /// Hands one publication to the hub; false if the stream must be read first.
    async fn place(&mut self, channel: &str, p: &Positioned) -> bool {
        let r = self
            .hub
            .submit_at(channel, &p.position, &p.payload, p.exclude, SOURCE)
            .await;
        match r {
            Ok(At::NeedsSync) => false,
            Ok(At::Sent(_) | At::Duplicate) => true,
            Err(e) => {
                tracing::debug!(error = %e, "broker: publication from the bus refused here");
                true
            }
        }
    }

    /// Starts reading `channel`'s stream from the position this node has.
    fn read(&mut self, channel: &str) {
        let Some(history) = self.hub.history() else {
            return;
        };
        let Some(rule) = history.rules().for_channel(channel).cloned() else {
            return;
        };
        let have = history
            .position(channel)
            .map(|(epoch, top)| (epoch.to_string(), top));
        self.next_id += 1;
        let id = self.next_id;
        let held = self
            .reading
            .remove(channel)
            .map(|r| r.held)
            .unwrap_or_default();
        self.reading.insert(
            channel.to_owned(),
            Reading {
                id,
                held,
                overflowed: false,
            },
        );
        let (queue, channel) = (self.queue.clone(), channel.to_owned());
        self.replies.spawn(async move {
            // Until Redis answers: the publisher refuses while it reconnects.
            let mut pause = Duration::from_millis(50);
            loop {
                let (reply, rx) = oneshot::channel();
                let req = Request::Sync {
                    channel: channel.clone(),
                    have: have.clone(),
                    rule: rule.clone(),
                    reply,
                };
                if queue.send(req).await.is_err() {
                    std::future::pending::<()>().await; // the broker is stopping
                }
                match rx.await {
                    Ok(Ok(snap)) => return (channel, id, snap),
                    Ok(Err(e)) => tracing::debug!(error = %e, %channel, "broker: reading a stream"),
                    Err(_) => std::future::pending::<()>().await,
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        });
    }

    /// Waits for a stream read to complete. Only while [`Follow::busy`].
    pub(crate) async fn next_read(&mut self) -> (String, u64, Snapshot) {
        loop {
            match self.replies.join_next().await {
                Some(Ok(r)) => return r,
                Some(Err(e)) => tracing::warn!(error = %e, "broker: a stream read failed"),
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Applies a completed read, then delivers what arrived meanwhile.
    pub(crate) async fn apply(&mut self, channel: String, id: u64, snap: Snapshot) {
        if self.reading.get(&channel).is_none_or(|r| r.id != id) {
            return; // unfollowed since, or read again since
        }
        match self.hub.sync(&channel, snap).await {
            Ok(Synced::Installed) => self.m.installed.increment(1),
            Ok(Synced::Filled(n)) => {
                self.m.filled.increment(1);
                self.m.gap_publications.increment(n);
            }
            Ok(Synced::Unchanged) => self.m.unchanged.increment(1),
            Ok(Synced::Reset) => {
                self.m.reset.increment(1);
                tracing::warn!(%channel, "broker: history lost in redis or out of its window; subscribers told unrecoverable");
            }
            Err(e) => {
                tracing::debug!(error = %e, "broker: stream not synced");
                return;
            }
        }
        let Some(r) = self.reading.remove(&channel) else {
            return;
        };
        let mut held = r.held.into_iter();
        while let Some(p) = held.next() {
            if !self.place(&channel, &p).await {
                // Something is missing after all: read again, keeping the rest.
                self.read(&channel);
                if let Some(again) = self.reading.get_mut(&channel) {
                    again.held = std::iter::once(p).chain(held).collect();
                }
                return;
            }
        }
        if r.overflowed {
            self.read(&channel);
        }
    }
}

fn hold(r: &mut Reading, p: Positioned) {
    if r.held.len() < MAX_HELD {
        r.held.push(p);
    } else {
        r.overflowed = true;
    }
}
