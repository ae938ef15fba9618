//! What the WebSocket edge holds for one connection: its way into the shard.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use pushgate_protocol::ConnId;
use thiserror::Error;
use tokio::time::Instant;

use crate::close::CloseReason;
use crate::grant::{Grant, RefreshError};
use crate::history::recovery::ReplyFn;
use crate::history::SubscribeRequest;
use crate::shard::Shard;

/// What the writer should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing {
    /// Frames were moved into the writer's buffer: write them.
    Frames,
    /// Close with this reason (after flushing what the writer holds, unless abortive).
    Close(CloseReason),
}

/// A subscribe command that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubscribeError {
    #[error("subscription limit of {0} channels per connection reached")]
    TooMany(usize),
    #[error("channel {0:?} is not allowed by this connection's token")]
    NotAllowed(String),
}

impl SubscribeError {
    /// The `code` of the error reply.
    pub fn code(&self) -> &'static str {
        match self {
            SubscribeError::TooMany(_) => "subscription_limit",
            SubscribeError::NotAllowed(_) => "forbidden",
        }
    }
}

/// One registered connection. Dropping it removes the connection from every index.
pub struct ConnHandle {
    shard: Arc<Shard>,
    slot: usize,
    id: ConnId,
    /// Why the connection ended, recorded by the edge for the close metric.
    reason: AtomicU8,
    /// permessage-deflate was negotiated (its reader accepts compressed messages).
    /// In what was padding after `reason`: the handle stays 32 bytes.
    deflate: AtomicBool,
    /// A connection of the dialect (Pusher): its reader hands text to the dialect's
    /// surface. Also in padding.
    dialect: AtomicBool,
}

impl ConnHandle {
    pub(crate) fn new(shard: Arc<Shard>, slot: usize, id: ConnId) -> Self {
        ConnHandle {
            shard,
            slot,
            id,
            reason: AtomicU8::new(CloseReason::ConnectionLost.index() as u8),
            deflate: AtomicBool::new(false),
            dialect: AtomicBool::new(false),
        }
    }

    pub(crate) fn mark_dialect(&self) {
        self.dialect.store(true, Ordering::Relaxed);
    }

    /// Whether the connection has a token grant (its channel permissions).
    pub fn has_grant(&self) -> bool {
        self.shard.state.lock().grants.contains_key(&self.slot)
    }

    /// Whether this is a connection of the dialect (`Shard::register_dialect`).
    pub fn is_dialect(&self) -> bool {
        self.dialect.load(Ordering::Relaxed)
    }

    /// Follows channels (already validated), joining presence channels as `member`
    /// (user id, `info` JSON text) and watching their events, rather than as the
    /// connection's user: the dialect's presence has a member per subscription.
    pub fn subscribe_member(
        &self,
        channels: &[String],
        member: Option<(&str, Option<&Arc<str>>)>,
    ) -> Result<(), SubscribeError> {
        self.shard
            .client_subscribe_member(self.slot, channels, member)
    }

    /// Gives the connection a user (publications to it, `disconnect` of it), replacing
    /// any it had: the dialect's sign-in.
    pub fn set_user(&self, user: &str) {
        self.shard.set_user(self.slot, user);
    }

    pub fn id(&self) -> ConnId {
        self.id
    }

    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    /// Waits for work for the writer. With `take`, queued frames are moved into `out`
    /// (which must be empty); without it (the writer is still flushing), only a close
    /// is reported.
    pub fn poll_outgoing(
        &self,
        cx: &mut Context<'_>,
        out: &mut VecDeque<Bytes>,
        take: bool,
    ) -> Poll<Outgoing> {
        self.shard.poll_outgoing(self.slot, cx, out, take)
    }

    /// Enqueues a frame for this connection only (a reply, a pong).
    pub fn send(&self, frame: Bytes) {
        self.shard.send(self.slot, frame);
    }

    /// Sends this connection's publications compressed (permessage-deflate negotiated
    /// with `server_max_window_bits` = `window_bits`, 8-15; 15 when the client named
    /// none). Frames of the connection's own (replies, pongs) stay plain.
    pub fn set_deflate(&self, window_bits: u8) {
        self.shard.state.lock().conns[self.slot].deflate = window_bits.clamp(8, 15);
        self.deflate.store(true, Ordering::Relaxed);
    }

    /// Whether [`set_deflate`](Self::set_deflate) was called: the client may send
    /// compressed messages.
    pub fn deflate(&self) -> bool {
        self.deflate.load(Ordering::Relaxed)
    }

    /// Records that the client was heard from (any frame counts as a heartbeat).
    pub fn touch(&self) {
        self.touch_at(Instant::now());
    }

    fn touch_at(&self, now: Instant) {
        self.shard.touch(self.slot, now);
    }

    /// Follows channels (already validated by the protocol layer). A token-authenticated
    /// connection may follow only what its token allows; if one channel is not allowed,
    /// none of the command's channels is followed.
    pub fn subscribe(&self, channels: &[String]) -> Result<(), SubscribeError> {
        self.shard.client_subscribe(self.slot, channels)
    }

    /// A client's subscribe: follows `req.channels` (a token-authenticated connection
    /// only those its token allows; if one is not allowed, none is followed), resuming
    /// history channels from `req.since` or sending their newest publication
    /// (`req.latest`). `reply` builds the answer (`subscribed` or an error), which goes
    /// out before any publication of those channels. When the shard is behind a
    /// position named in `since`, the subscribe completes once it caught up.
    pub fn subscribe_with(
        &self,
        req: SubscribeRequest,
        reply: ReplyFn,
    ) -> Result<(), SubscribeError> {
        self.shard
            .client_subscribe_with(self.slot, self.id, req, reply)
    }

    /// Sends the reply to a subscribe of `channels` once this node follows each of
    /// them on the cluster bus (at once on a single node, or if it already does), so
    /// that the client hears every node's publications from the moment it is told.
    pub fn reply_when_subscribed(&self, channels: &[String], frame: Bytes) {
        let interest = self.shard.interest();
        let keys = channels
            .iter()
            .map(|c| crate::Key::Channel(c.as_str().into()));
        if let Some(frame) = interest.hold(keys, self.id, frame) {
            self.send(frame);
        }
    }

    /// Stops following channels.
    pub fn unsubscribe(&self, channels: &[String]) {
        self.shard.client_unsubscribe(self.slot, channels);
    }

    /// Replaces the connection's grant with a fresh token's (same user). Channels the new
    /// grant does not allow are unsubscribed and returned.
    pub fn refresh(&self, user: &str, grant: Grant) -> Result<Vec<String>, RefreshError> {
        self.shard.apply_refresh(self.slot, user, grant)
    }

    /// Starts a `refresh` whose token will be verified elsewhere; see
    /// [`Shard::end_refresh`](crate::Shard::end_refresh), which must follow an `Ok`.
    pub fn begin_refresh(&self) -> Result<(), RefreshError> {
        self.shard.begin_refresh(self.slot)
    }

    /// The connection's user, if it has one (a copy: for bookkeeping when it closes).
    pub fn user(&self) -> Option<Box<str>> {
        self.shard.user_of(self.slot)
    }

    /// The close code and reason an operator chose for this connection, if any.
    pub fn take_close_note(&self) -> Option<(u16, Box<str>)> {
        self.shard.take_close_note(self.slot)
    }

    /// Records why the connection is ending (counted when the handle drops).
    pub fn set_reason(&self, reason: CloseReason) {
        self.reason.store(reason.index() as u8, Ordering::Relaxed);
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        let reason = CloseReason::ALL[self.reason.load(Ordering::Relaxed) as usize];
        self.shard.unregister(self.slot, reason);
    }
}
