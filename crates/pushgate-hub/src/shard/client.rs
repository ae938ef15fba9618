//! What one connection does through its [`ConnHandle`](crate::ConnHandle): the handle
//! holds a slot and calls these; it never reaches into the shard's state itself.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use pushgate_protocol::ConnId;
use tokio::time::Instant;

use super::Shard;
use crate::handle::{Outgoing, SubscribeError};
use crate::history::recovery::{ReplyFn, Wait};
use crate::history::SubscribeRequest;
use crate::interest::Interest;

impl Shard {
    /// `ConnHandle::poll_outgoing` for the connection in `slot`.
    pub(crate) fn poll_outgoing(
        &self,
        slot: usize,
        cx: &mut Context<'_>,
        out: &mut VecDeque<Bytes>,
        take: bool,
    ) -> Poll<Outgoing> {
        let mut st = self.state.lock();
        let q = &mut st.conns[slot].outbound;
        match q.closing {
            Some(r) if r.is_abortive() => return Poll::Ready(Outgoing::Close(r)),
            _ => {}
        }
        if take && !st.backlogs.is_empty() {
            if let Some(mut backlog) = st.backlogs.remove(&slot) {
                // A reply and recovered publications go before what was queued since.
                let q = &mut st.conns[slot].outbound;
                let frames = backlog.len() + q.len();
                q.take_into(out);
                backlog.append(out);
                *out = backlog;
                self.metrics.write_batch_frames.record(frames as f64);
                return Poll::Ready(Outgoing::Frames);
            }
        }
        let q = &mut st.conns[slot].outbound;
        let frames = q.len();
        if take && q.take_into(out) {
            self.metrics.write_batch_frames.record(frames as f64);
            return Poll::Ready(Outgoing::Frames);
        }
        match q.closing {
            Some(r) if take => Poll::Ready(Outgoing::Close(r)),
            _ => {
                q.register(cx.waker());
                Poll::Pending
            }
        }
    }

    /// Records that the client in `slot` was heard from at `at`.
    pub(crate) fn touch(&self, slot: usize, at: Instant) {
        let ms = self.millis(at);
        self.state.lock().conns[slot].last_seen = ms;
    }

    /// `ConnHandle::subscribe` for the connection in `slot`.
    pub(crate) fn client_subscribe(
        &self,
        slot: usize,
        channels: &[String],
    ) -> Result<(), SubscribeError> {
        let max = self.config.max_subscriptions_per_conn;
        let mut st = self.state.lock();
        if let Some(g) = st.grants.get(&slot) {
            if let Some(ch) = channels.iter().find(|c| !g.grant.permissions.allows(c)) {
                return Err(SubscribeError::NotAllowed(ch.clone()));
            }
        }
        st.subscribe(slot, channels, max)
            .map_err(SubscribeError::TooMany)?;
        self.update_gauges(st);
        Ok(())
    }

    /// `ConnHandle::subscribe_member` for the connection in `slot`.
    pub(crate) fn client_subscribe_member(
        &self,
        slot: usize,
        channels: &[String],
        member: Option<(&str, Option<&Arc<str>>)>,
    ) -> Result<(), SubscribeError> {
        let max = self.config.max_subscriptions_per_conn;
        let mut st = self.state.lock();
        st.subscribe_as(slot, channels, max, member)
            .map_err(SubscribeError::TooMany)?;
        self.update_gauges(st);
        Ok(())
    }

    /// `ConnHandle::set_user` for the connection in `slot`: joins the user index (and
    /// leaves the previous user's).
    pub(crate) fn set_user(&self, slot: usize, user: &str) {
        let mut st = self.state.lock();
        if let Some(old) = st.conns[slot].user.take() {
            if super::remove_from_index(&mut st.users, &old, slot) {
                st.interest
                    .remove(|| crate::interest::Key::User(old.clone()));
            }
        }
        st.conns[slot].user = Some(user.into());
        let set = st.users.entry(user.into()).or_default();
        set.insert(slot);
        if set.len() == 1 {
            st.interest.add(|| crate::interest::Key::User(user.into()));
        }
    }

    /// `ConnHandle::subscribe_with` for the connection `id` in `slot`.
    pub(crate) fn client_subscribe_with(
        &self,
        slot: usize,
        id: ConnId,
        req: SubscribeRequest,
        reply: ReplyFn,
    ) -> Result<(), SubscribeError> {
        let max = self.config.max_subscriptions_per_conn;
        let mut st = self.state.lock();
        if let Some(g) = st.grants.get(&slot) {
            if let Some(ch) = req.channels.iter().find(|c| !g.grant.permissions.allows(c)) {
                let e = SubscribeError::NotAllowed(ch.clone());
                self.send_locked(&mut st, slot, reply(Err(&e)));
                return Err(e);
            }
        }
        let r = match st.subscribe_recovering(slot, &req, max, reply, None) {
            Ok(r) => r,
            Err(Wait(reply)) => {
                st.wait(slot, id, req, reply);
                // The shard's worker retries it after each batch and, while some
                // wait, on a timer.
                self.waiting.notify_one();
                Ok(())
            }
        };
        self.update_gauges(st);
        r
    }

    /// `ConnHandle::unsubscribe` for the connection in `slot`.
    pub(crate) fn client_unsubscribe(&self, slot: usize, channels: &[String]) {
        let mut st = self.state.lock();
        st.unsubscribe(slot, channels);
        self.update_gauges(st);
    }

    /// The node-wide registry of followed channels and users.
    pub(crate) fn interest(&self) -> Arc<Interest> {
        self.state.lock().interest.clone()
    }

    /// The user of the connection in `slot`, if it has one.
    pub(crate) fn user_of(&self, slot: usize) -> Option<Box<str>> {
        self.state.lock().conns[slot].user.clone()
    }
}
