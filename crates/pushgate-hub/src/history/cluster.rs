//! History positions learnt from a cluster broker: with Redis, Redis assigns every
//! offset (docs/cluster.md, "History through Redis") and each node keeps a copy of the
//! streams its clients follow. Two entry points, both called by the broker's subscriber
//! task in the order Redis delivered:
//!
//! - [`Hub::submit_at`]: a publication with the position Redis gave it. Under the
//!   stream's lock it is appended and handed to every shard, as a local publication is
//!   (`Hub::stamp_and_send`), when it is the next offset; an older one is a duplicate
//!   and dropped; anything else (the stream is not synced, another epoch, offsets
//!   missing before it) changes nothing and asks for a sync.
//! - [`Hub::sync`]: a snapshot of the stream read from Redis. It installs it (first
//!   sync), fills a gap (the missed publications go to the channel's subscribers, in
//!   order, before anything newer), or, when the epoch changed or the gap is no longer
//!   in Redis, resets the stream and tells its subscribers `unrecoverable`. A sync
//!   raises the stream's generation and goes through every shard's queue, so that
//!   subscribes arriving meanwhile wait until their shard has processed it
//!   ([`super::stream`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pushgate_protocol::{encode_positioned, ConnId, Payload, Position, Reply};
use tokio::time::Instant;

use super::stream::{Inner, Stream};
use crate::fanout::{ChannelFrame, Route, Stamp};
use crate::hub::{Hub, Submitted};
use crate::publication::{Publication, PublishError, Target};

/// What [`Hub::submit_at`] did with a publication.
pub enum At {
    /// Appended and handed to the shards.
    Sent(Submitted),
    /// Its offset was delivered already: dropped.
    Duplicate,
    /// The stream cannot take it as its next publication (not synced, another epoch,
    /// offsets missing before it): nothing was done. Sync the stream, then submit it
    /// again.
    NeedsSync,
}

/// A stream as Redis has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub epoch: String,
    /// The last offset Redis assigned.
    pub top: u64,
    /// Publications Redis keeps (those after the position the sync asked from, or
    /// the newest ones), in ascending offsets.
    pub entries: Vec<SnapshotEntry>,
}

/// One publication of a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    pub offset: u64,
    pub payload: Payload,
    /// How long ago it was published.
    pub age: Duration,
}

/// What [`Hub::sync`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synced {
    /// The stream's first position on this node.
    Installed,
    /// This many missed publications were delivered.
    Filled(u64),
    /// Nothing was missed.
    Unchanged,
    /// The stream starts over (another epoch, or the gap is no longer in Redis); its
    /// subscribers were told `unrecoverable`.
    Reset,
}

impl Hub {
    /// Delivers a publication to `channel` at the position the cluster gave it (see
    /// the module doc). A channel without a history rule on this node is published
    /// as any publication (its position ignored).
    pub async fn submit_at(
        &self,
        channel: &str,
        at: &Position,
        payload: &Payload,
        exclude: Option<ConnId>,
        source: &'static str,
    ) -> Result<At, PublishError> {
        let target = Target::Channels(vec![channel.to_owned()]);
        let Some(history) = self.history().filter(|h| h.is_history(channel)).cloned() else {
            let p = Publication {
                target,
                payload: payload.clone(),
                exclude,
            };
            return self.submit(p, source).await.map(At::Sent);
        };
        self.validate(&target, payload.len())?;
        let pending = self.pending();
        let permits = self.reserve(&self.all_shards()).await?;
        let (stream, mut g) = locked(&history, channel);
        if !g.synced || *g.epoch != *at.epoch || at.offset > g.top + 1 {
            return Ok(At::NeedsSync);
        }
        if at.offset <= g.top {
            return Ok(At::Duplicate);
        }
        let frame = encode_positioned(channel, at.offset, payload);
        let delta = g.push(at.offset, frame.clone(), Instant::now());
        let stamp = Stamp {
            stream: stream.clone(),
            generation: g.generation,
            offset: at.offset,
            epoch: g.epoch.clone(),
        };
        let route = Route::Channels(vec![ChannelFrame {
            name: channel.to_owned(),
            frame,
            stream: Some(stamp),
            deflated: Default::default(),
        }]);
        self.count_publication("channel", source);
        let (job, rx) = self.job(route, exclude, permits.len(), Some(pending));
        self.send(job, permits);
        drop(g);
        history.add_bytes(delta);
        history.enforce_bound();
        Ok(At::Sent(Submitted {
            report: Some(rx),
            positions: vec![(channel.to_owned(), at.clone())],
        }))
    }

    /// Brings `channel`'s stream to the state Redis has (see the module doc).
    pub async fn sync(&self, channel: &str, snap: Snapshot) -> Result<Synced, PublishError> {
        let Some(history) = self.history().filter(|h| h.is_history(channel)).cloned() else {
            return Ok(Synced::Unchanged);
        };
        let permits = self.reserve(&self.all_shards()).await?;
        let now = Instant::now();
        let entries: Vec<(u64, Bytes, Instant)> = snap
            .entries
            .iter()
            .map(|e| {
                let frame = encode_positioned(channel, e.offset, &e.payload);
                (e.offset, frame, now.checked_sub(e.age).unwrap_or(now))
            })
            .collect();
        let (stream, mut g) = locked(&history, channel);
        g.stale = false;
        let epoch: Arc<str> = snap.epoch.as_str().into();
        let same_epoch = g.synced && *g.epoch == *epoch;
        let (outcome, frames, delta) = if !g.synced {
            g.synced = true;
            g.generation += 1;
            let delta = g.install(epoch, snap.top, entries, now);
            (Synced::Installed, Vec::new(), delta)
        } else if same_epoch && snap.top <= g.top {
            return Ok(Synced::Unchanged);
        } else if let Some(gap) = same_epoch.then(|| gap(&g, snap.top, &entries)).flatten() {
            let fill = &entries[gap..];
            let delta = g.extend(fill, now);
            let frames = fill.iter().map(|e| e.1.clone()).collect();
            (Synced::Filled(fill.len() as u64), frames, delta)
        } else {
            g.generation += 1;
            let delta = g.install(epoch, snap.top, entries, now);
            let notice = Reply::Unrecoverable {
                channel,
                epoch: &snap.epoch,
                offset: snap.top,
            }
            .to_frame();
            history.count_reset();
            (Synced::Reset, vec![notice], delta)
        };
        let stamp = Stamp {
            stream: stream.clone(),
            generation: g.generation,
            offset: g.top,
            epoch: g.epoch.clone(),
        };
        let (job, _report) = self.job(
            Route::Stream(channel.to_owned(), stamp, frames),
            None,
            permits.len(),
            None,
        );
        self.send(job, permits);
        drop(g);
        history.add_bytes(delta);
        history.enforce_bound();
        Ok(outcome)
    }
}

/// The stream of a history channel, locked (looked up again if the store dropped it
/// meanwhile).
fn locked(
    history: &super::History,
    channel: &str,
) -> (
    Arc<Stream>,
    parking_lot::ArcMutexGuard<parking_lot::RawMutex, Inner>,
) {
    loop {
        let stream = history.stream(channel).expect("the channel has a rule");
        let g = stream.inner.lock_arc();
        if !g.removed {
            return (stream, g);
        }
    }
}

/// Where in `entries` the publications after the stream's top start, if they are
/// exactly the ones up to `top` (nothing missing).
fn gap(g: &Inner, top: u64, entries: &[(u64, Bytes, Instant)]) -> Option<usize> {
    let start = entries.iter().position(|e| e.0 > g.top)?;
    let fill = &entries[start..];
    let whole = fill[0].0 == g.top + 1
        && fill.len() as u64 == top - g.top
        && fill.windows(2).all(|w| w[1].0 == w[0].0 + 1);
    whole.then_some(start)
}
