//! A client subscribe that may resume from positions (`since`) or ask for the newest
//! publication (`latest`), done under the shard's lock so that recovered and live
//! publications join without a gap or a duplicate (see [`super::stream`]).
//!
//! The reply and the recovered publications go to a per-connection backlog that the
//! connection's writer sends before anything queued after it; the backlog is not
//! counted by the slow-consumer policy (a recovery is bounded by the history rules,
//! not by the queue), but it is bounded per connection ([`MAX_BACKLOG_BYTES`]).

use std::time::Duration;

use bytes::Bytes;
use pushgate_protocol::{ConnId, Position};
use tokio::time::Instant;

use super::stream::Recovery;
use crate::handle::SubscribeError;
use crate::interest::Key;
use crate::shard::ShardState;

/// Most bytes of replies and recovered publications one connection may have waiting;
/// a recovery beyond it closes the connection as a slow consumer (4008).
pub const MAX_BACKLOG_BYTES: usize = 16 << 20;

/// A client's subscribe command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeRequest {
    pub channels: Vec<String>,
    /// Positions to resume from (history channels among `channels`).
    pub since: Vec<(String, Position)>,
    /// Send the newest kept publication of each history channel first.
    pub latest: bool,
    /// Send `join` / `leave` events of the presence channels among `channels`.
    pub presence_events: bool,
}

/// What a subscribe did, for its reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscribed {
    /// Where each history channel's stream is: every later publication follows.
    pub positions: Vec<(String, Position)>,
    /// Channels resumed from `since`, their gap sent.
    pub recovered: Vec<String>,
    /// Channels whose `since` could not be honoured (another epoch, out of the window).
    pub unrecovered: Vec<String>,
}

/// Builds the reply frame (`subscribed`, or an error) once the outcome is known, under
/// the shard's lock.
pub type ReplyFn = Box<dyn FnOnce(Result<&Subscribed, &SubscribeError>) -> Bytes + Send>;

/// How long a subscribe naming a position beyond everything this node has (cluster
/// only) waits for it to arrive from Redis before it is answered `unrecovered`.
pub const AHEAD_WAIT: Duration = Duration::from_secs(5);

/// A subscribe waiting for its shard to fan out publications its positions name, or
/// (cluster) for a stream to be synced from Redis.
pub(crate) struct Waiting {
    pub(crate) slot: usize,
    pub(crate) id: ConnId,
    pub(crate) req: SubscribeRequest,
    pub(crate) reply: ReplyFn,
    /// When it started waiting.
    pub(crate) since: Instant,
    /// Channels this subscribe keeps wanted on the bus while it waits (they are not in
    /// the shard's index yet, and a stream is synced only while its channel is
    /// followed); released when it completes or its connection is gone.
    pub(crate) pins: Vec<String>,
}

/// A subscribe the shard is behind for: nothing was changed; try again later.
pub(crate) struct Wait(pub(crate) ReplyFn);

impl ShardState {
    /// Subscribes connection `slot` as `req` asks and queues the reply, then the
    /// recovered publications, ahead of anything live; a refusal is replied to the
    /// same way and returned. Nothing changes when it must wait. `waiting`: since when
    /// it has been waiting already, if it has.
    pub(crate) fn subscribe_recovering(
        &mut self,
        slot: usize,
        req: &SubscribeRequest,
        max: usize,
        reply: ReplyFn,
        waiting: Option<Instant>,
    ) -> Result<Result<(), SubscribeError>, Wait> {
        let conn = &self.conns[slot];
        let mut new: Vec<String> = Vec::new();
        for c in &req.channels {
            if !conn.channels.iter().any(|have| **have == **c) && !new.contains(c) {
                new.push(c.clone());
            }
        }
        if conn.channels.len() + new.len() > max {
            let e = SubscribeError::TooMany(max);
            let frame = reply(Err(&e));
            self.queue_backlog(slot, Some(frame), Vec::new());
            return Ok(Err(e));
        }
        let mut out = Subscribed::default();
        let mut frames: Vec<Bytes> = Vec::new();
        let history = self.history.clone();
        // Streams looked at are attached until the end, so that none is evicted (and
        // created again under another epoch) between reading its position and joining.
        let mut pinned: Vec<&str> = Vec::new();
        if let Some(history) = &history {
            let now = tokio::time::Instant::now();
            for ch in &req.channels {
                if pinned.contains(&ch.as_str()) {
                    continue;
                }
                let Some(stream) = history.attach(ch) else {
                    continue;
                };
                pinned.push(ch);
                let (generation, upto) = stream.fanned(self.shard);
                let mut g = stream.inner.lock();
                // Cluster: the stream's position is not known (yet, or any more), or
                // this shard has not processed its last sync (its offset is of an
                // older state).
                let unsynced = !g.synced || g.stale;
                if unsynced || generation != g.generation {
                    drop(g);
                    if unsynced {
                        history.request_sync(ch);
                    }
                    pinned.iter().for_each(|c| history.detach(c));
                    return Err(Wait(reply));
                }
                history.prune_locked(&mut g, now);
                if new.contains(ch) {
                    let since = req.since.iter().find(|(c, _)| c == ch).map(|(_, p)| p);
                    let given_up = waiting.is_some_and(|t| t.elapsed() >= AHEAD_WAIT);
                    match since.map(|p| g.recover(p, upto, history.learnt())) {
                        Some(Recovery::Recovered(f)) => {
                            frames.extend(f);
                            out.recovered.push(ch.clone());
                        }
                        Some(Recovery::Unrecovered) => out.unrecovered.push(ch.clone()),
                        Some(Recovery::Ahead) if given_up => out.unrecovered.push(ch.clone()),
                        Some(Recovery::Wait | Recovery::Ahead) => {
                            drop(g);
                            pinned.iter().for_each(|c| history.detach(c));
                            return Err(Wait(reply));
                        }
                        None if req.latest => frames.extend(g.latest(upto)),
                        None => {}
                    }
                }
                out.positions.push((ch.clone(), g.position(upto)));
            }
            history.count_recoveries(out.recovered.len(), out.unrecovered.len());
        }
        let joined = self.subscribe(slot, &new, max);
        debug_assert!(joined.is_ok(), "the limit was checked above");
        if let Some(p) = self.presence.as_ref().filter(|_| req.presence_events) {
            let id = self.conns[slot].id;
            for c in &req.channels {
                p.watch(c, id);
            }
        }
        if let Some(history) = &history {
            pinned.iter().for_each(|c| history.detach(c));
        }
        // On a cluster the reply waits until the bus follows every new channel
        // (`Interest::hold`); it is released to the connection's queue then.
        let keys = new.iter().map(|c| Key::Channel(c.as_str().into()));
        let id = self.conns[slot].id;
        let frame = self.interest.hold(keys, id, reply(Ok(&out)));
        self.queue_backlog(slot, frame, frames);
        Ok(Ok(()))
    }

    /// Puts a reply and its recovered publications in the connection's backlog and
    /// wakes its writer; closes the connection (4008) past [`MAX_BACKLOG_BYTES`].
    fn queue_backlog(&mut self, slot: usize, reply: Option<Bytes>, frames: Vec<Bytes>) {
        if reply.is_none() && frames.is_empty() {
            return;
        }
        let backlog = self.backlogs.entry(slot).or_default();
        backlog.extend(reply);
        backlog.extend(frames);
        let bytes: usize = backlog.iter().map(Bytes::len).sum();
        let conn = &mut self.conns[slot];
        if bytes > MAX_BACKLOG_BYTES {
            self.backlogs.remove(&slot);
            conn.outbound.close(crate::CloseReason::SlowConsumer);
        } else {
            conn.outbound.notify();
        }
    }

    /// Puts a subscribe that must wait in the list, keeping the channels it names
    /// wanted on the cluster bus meanwhile.
    pub(crate) fn wait(&mut self, slot: usize, id: ConnId, req: SubscribeRequest, reply: ReplyFn) {
        let conn = &self.conns[slot];
        let mut pins: Vec<String> = Vec::new();
        for c in &req.channels {
            if !conn.channels.iter().any(|have| **have == **c) && !pins.contains(c) {
                pins.push(c.clone());
            }
        }
        for c in &pins {
            self.interest.add(|| Key::Channel(c.as_str().into()));
        }
        self.waiting.push(Waiting {
            slot,
            id,
            req,
            reply,
            since: Instant::now(),
            pins,
        });
    }

    /// Completes the waiting subscribes the shard has caught up with (after each
    /// batch, and on a timer while some wait).
    pub(crate) fn retry_waiting(&mut self, max: usize) {
        for w in std::mem::take(&mut self.waiting) {
            let Waiting {
                slot,
                id,
                req,
                reply,
                since,
                pins,
            } = w;
            // The connection may have gone (and its slot been reused).
            let gone = self.conns.get(slot).is_none_or(|c| c.id != id);
            if !gone {
                if let Err(Wait(reply)) =
                    self.subscribe_recovering(slot, &req, max, reply, Some(since))
                {
                    self.waiting.push(Waiting {
                        slot,
                        id,
                        req,
                        reply,
                        since,
                        pins,
                    });
                    continue;
                }
            }
            for c in &pins {
                self.interest.remove(|| Key::Channel(c.as_str().into()));
            }
        }
    }
}
