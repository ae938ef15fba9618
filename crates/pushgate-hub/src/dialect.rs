//! A second client protocol beside pushgate.v1 on the same shards: the Pusher
//! protocol (`pushgate-pusher`). The hub knows it only through [`Dialect`], installed
//! once per node ([`Hub::install_dialect`](crate::Hub::install_dialect)).
//!
//! A connection registered as the dialect's (`Shard::register_dialect`) gets each
//! publication in the dialect's form, built from the pushgate.v1 frame by the first
//! such recipient the fan-out meets (any shard) and shared by the others, exactly as
//! SSE events are (`sse.rs`): encoded once per frame of the job, never per recipient.
//! A publication with no dialect recipient costs an empty `OnceLock` per job.

use std::sync::Arc;

use bytes::Bytes;
use pushgate_protocol::{PresenceClient, PresenceEvent};

use crate::per_frame::PerFrame;

/// The `protocol` label of the dialect's metrics.
pub const DIALECT_LABEL: &str = "pusher";

/// How publications and presence events look to the dialect's connections.
pub trait Dialect: Send + Sync + 'static {
    /// A publication's frame, from its pushgate.v1 `frame`; `channel` names the
    /// channel (`None` for publications to all, users or connections). `None`: the
    /// publication has no form in the dialect and is not sent to its connections.
    fn publication(&self, channel: Option<&str>, frame: &Bytes) -> Option<Bytes>;

    /// A presence event's frame for the dialect's watchers of `channel`. `user_edge`:
    /// the event is its user's first join or last leave of the channel (node-wide with
    /// one node, cluster-wide with a cluster broker). `None`: nothing is sent.
    fn presence_event(
        &self,
        kind: PresenceEvent,
        channel: &str,
        client: &PresenceClient,
        user_edge: bool,
    ) -> Option<Bytes>;

    /// `user`'s first connection joined `channel` (`joined`) or its last one left it:
    /// node-wide with one node (called by the presence events task), cluster-wide with
    /// a cluster broker (called once for the cluster, by the node whose change or
    /// cleanup made the edge). Must not block.
    fn user_edge(&self, _channel: &str, _user: &str, _joined: bool) {}
}

/// The dialect's frames of one job: one per frame of its route.
#[derive(Default)]
pub(crate) struct DialectFrames(PerFrame<Option<Bytes>>);

impl DialectFrames {
    /// The frame of a route's single frame (all, users, connections).
    #[inline]
    pub(crate) fn one<'a>(
        &'a self,
        d: &Option<Arc<dyn Dialect>>,
        frame: &Bytes,
    ) -> Option<&'a Bytes> {
        let d = d.as_deref()?;
        self.0.one(|| d.publication(None, frame)).as_ref()
    }

    /// The frame of channel `i` of `n`, named `name`.
    #[inline]
    pub(crate) fn channel<'a>(
        &'a self,
        d: &Option<Arc<dyn Dialect>>,
        i: usize,
        n: usize,
        name: &str,
        frame: &Bytes,
    ) -> Option<&'a Bytes> {
        let d = d.as_deref()?;
        self.0
            .channel(i, n, || d.publication(Some(name), frame))
            .as_ref()
    }
}
