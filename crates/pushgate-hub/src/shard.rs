//! One shard: the connections hashed to it and its channel and user indexes.
//!
//! The state sits behind the shard's own `parking_lot` mutex. The shard's worker
//! thread runs both the fan-out loop and the connections' tasks, so the lock is
//! almost never contended; other threads take it only for stats and admin calls.
//! Removing a connection costs O(its subscriptions), never a scan of the pool.

use std::collections::VecDeque;
use std::sync::Arc;

use ahash::{AHashMap, AHashSet};
use bytes::Bytes;
use parking_lot::Mutex;
use pushgate_protocol::ConnId;
use slab::Slab;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::close::CloseReason;
use crate::compressed::Compressor;
use crate::config::HubConfig;
use crate::fanout::Job;
use crate::grant::{Grant, GrantEntry};
use crate::handle::{ConnHandle, SubscribeError};
use crate::history::{History, Waiting};
use crate::interest::{Interest, Key};
use crate::metrics::ShardMetrics;
use crate::outbound::{Limits, Outbound};
use crate::presence::Presence;

mod client;

/// What a server-side change to a user's connections did: filled per shard by
/// [`Shard::subscribe_user`], summed over the shards by the hub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdminReport {
    /// Connections the change applied to.
    pub applied: usize,
    /// Connections left unchanged (the subscription limit would be exceeded).
    pub refused: usize,
}

impl AdminReport {
    pub(crate) fn add(&mut self, other: AdminReport) {
        self.applied += other.applied;
        self.refused += other.refused;
    }
}

/// What a connection gets publications as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    WebSocket,
    Sse,
    /// The dialect's frames (`dialect.rs`).
    Dialect,
}

/// One shard of the hub.
pub struct Shard {
    id: usize,
    pub(crate) state: Mutex<ShardState>,
    pub(crate) limits: Limits,
    pub(crate) config: Arc<HubConfig>,
    pub(crate) metrics: ShardMetrics,
    /// Compresses publications for connections with permessage-deflate (`compressed.rs`).
    pub(crate) compressor: Compressor,
    /// The origin of the shard's millisecond clock (`Conn::last_seen`).
    epoch: Instant,
    /// Publications from the hub; taken by [`Shard::run`].
    pub(crate) jobs: Mutex<Option<mpsc::Receiver<Arc<Job>>>>,
    /// Told when a subscribe starts waiting, so the worker retries it on a timer too.
    pub(crate) waiting: tokio::sync::Notify,
}

/// Connections a shard reserves room for at start, in its own slab and in the edge's
/// poller's (address space only: a page of a slab becomes resident when a connection is
/// first stored in it).
///
/// Why: a growing slab moves to an array twice the size and frees the old one, and
/// jemalloc keeps freed memory resident on an idle node (it returns it only while
/// allocating): ~230 B per idle connection at 19,000 for the poller's slab, ~50 B for
/// the shard's (docs/benchmarks.md, "Idle memory per connection"). A shard with more
/// connections grows its slabs as before.
pub const RESERVED_CONNS: usize = 1 << 16;

/// A connection as the shard sees it.
pub(crate) struct Conn {
    pub(crate) id: ConnId,
    pub(crate) user: Option<Box<str>>,
    /// Channels followed, for O(subscriptions) removal. Usually tiny.
    pub(crate) channels: Vec<Box<str>>,
    pub(crate) outbound: Outbound,
    /// Last time anything arrived from the client, in milliseconds since the shard's
    /// epoch (wrapping u32: a connection is reaped long before it could wrap).
    pub(crate) last_seen: u32,
    /// permessage-deflate: 0 if not negotiated, else the server window bits the client
    /// allows (8-15). Fits in the padding after `last_seen`.
    pub(crate) deflate: u8,
    /// A Server-Sent Events stream: gets SSE events instead of WebSocket frames.
    pub(crate) sse: bool,
    /// A connection of the dialect (Pusher): gets the dialect's frames (`dialect.rs`).
    pub(crate) alt: bool,
}

/// Everything a shard owns. Slab slots are dense and reused; indexes store slots.
#[derive(Default)]
pub(crate) struct ShardState {
    pub(crate) conns: Slab<Conn>,
    pub(crate) by_id: AHashMap<ConnId, usize>,
    pub(crate) channels: AHashMap<Box<str>, AHashSet<usize>>,
    pub(crate) users: AHashMap<Box<str>, AHashSet<usize>>,
    pub(crate) subscriptions: usize,
    /// Token grants by slot, for token-authenticated connections only (see `grant.rs`).
    pub(crate) grants: AHashMap<usize, GrantEntry>,
    /// Close code and reason chosen by an operator for connections being disconnected
    /// (`Hub::disconnect_with`); empty almost always, so it costs idle connections nothing.
    pub(crate) close_notes: AHashMap<usize, (u16, Box<str>)>,
    /// The node-wide registry told when a channel or user enters or leaves this index.
    pub(crate) interest: Arc<Interest>,
    /// This shard's index (its slot in each history stream's per-shard offsets).
    pub(crate) shard: usize,
    /// Channel history, when the node has history rules.
    pub(crate) history: Option<Arc<History>>,
    /// Presence, when the node has presence rules.
    pub(crate) presence: Option<Arc<Presence>>,
    /// Subscribes waiting for this shard to catch up with a position they name
    /// (`history::recovery`); empty almost always.
    pub(crate) waiting: Vec<Waiting>,
    /// Replies and recovered publications by slot, sent before the connection's queue;
    /// empty almost always.
    pub(crate) backlogs: AHashMap<usize, VecDeque<Bytes>>,
}

impl Shard {
    pub(crate) fn new(
        id: usize,
        config: Arc<HubConfig>,
        interest: Arc<Interest>,
        history: Option<Arc<History>>,
        presence: Option<Arc<Presence>>,
        jobs: mpsc::Receiver<Arc<Job>>,
    ) -> Shard {
        Shard {
            id,
            state: Mutex::new(ShardState {
                conns: Slab::with_capacity(RESERVED_CONNS),
                interest,
                shard: id,
                history,
                presence,
                ..ShardState::default()
            }),
            limits: Limits {
                max_frames: config.queue_max_frames,
                max_bytes: config.queue_max_bytes,
                policy: config.slow_policy,
            },
            compressor: Compressor::new(config.compression),
            config,
            metrics: ShardMetrics::new(id),
            epoch: Instant::now(),
            jobs: Mutex::new(Some(jobs)),
            waiting: tokio::sync::Notify::new(),
        }
    }

    /// `at` on the shard's wrapping millisecond clock.
    pub(crate) fn millis(&self, at: Instant) -> u32 {
        at.saturating_duration_since(self.epoch).as_millis() as u32
    }

    /// This shard's index.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The metric handles of this shard (the edge's writers update some of them).
    pub fn metrics(&self) -> &ShardMetrics {
        &self.metrics
    }

    /// Registers a connection; it is deregistered when the handle is dropped.
    pub fn register(self: &Arc<Self>, id: ConnId, user: Option<&str>) -> ConnHandle {
        self.register_with(id, user, None, &[])
    }

    /// Registers a token-authenticated connection: with its grant (checked on every
    /// client subscribe, expiring with the token) and the channels it joins at once.
    /// `subscribe` must respect `max_subscriptions_per_conn` (beyond it, none is joined).
    pub fn register_with(
        self: &Arc<Self>,
        id: ConnId,
        user: Option<&str>,
        grant: Option<Grant>,
        subscribe: &[String],
    ) -> ConnHandle {
        self.register_conn(id, user, grant, subscribe, Form::WebSocket)
    }

    /// Registers a Server-Sent Events stream: publications reach it as SSE events
    /// (encoded once per publication, `sse.rs`); it joins channels through
    /// [`ConnHandle::subscribe_with`].
    pub fn register_sse(
        self: &Arc<Self>,
        id: ConnId,
        user: Option<&str>,
        grant: Option<Grant>,
    ) -> ConnHandle {
        self.metrics.sse_connections.increment(1.0);
        self.register_conn(id, user, grant, &[], Form::Sse)
    }

    /// Registers a connection of the node's dialect (Pusher, `dialect.rs`): it gets
    /// publications and presence events in the dialect's form; it joins channels
    /// through [`ConnHandle::subscribe_member`] and gets a user through
    /// [`ConnHandle::set_user`].
    pub fn register_dialect(self: &Arc<Self>, id: ConnId) -> ConnHandle {
        self.metrics.dialect_connections.increment(1.0);
        let handle = self.register_conn(id, None, None, &[], Form::Dialect);
        handle.mark_dialect();
        handle
    }

    fn register_conn(
        self: &Arc<Self>,
        id: ConnId,
        user: Option<&str>,
        grant: Option<Grant>,
        subscribe: &[String],
        form: Form,
    ) -> ConnHandle {
        let mut st = self.state.lock();
        let slot = st.conns.insert(Conn {
            id,
            user: user.map(Into::into),
            channels: Vec::new(),
            outbound: Outbound::default(),
            last_seen: self.millis(Instant::now()),
            deflate: 0,
            sse: form == Form::Sse,
            alt: form == Form::Dialect,
        });
        st.by_id.insert(id, slot);
        if let Some(u) = user {
            let set = st.users.entry(u.into()).or_default();
            set.insert(slot);
            if set.len() == 1 {
                st.interest.add(|| Key::User(u.into()));
            }
        }
        if let Some(grant) = grant {
            st.grants.insert(slot, GrantEntry::new(grant));
        }
        if subscribe.is_empty() {
            drop(st);
        } else {
            let _ = st.subscribe(slot, subscribe, self.config.max_subscriptions_per_conn);
            self.update_gauges(st);
        }
        self.metrics.connections.increment(1.0);
        self.metrics.opened.increment(1);
        ConnHandle::new(self.clone(), slot, id)
    }

    pub(crate) fn unregister(&self, slot: usize, reason: CloseReason) {
        let mut st = self.state.lock();
        let conn = st.conns.remove(slot);
        st.by_id.remove(&conn.id);
        if !st.grants.is_empty() {
            st.grants.remove(&slot);
        }
        if !st.close_notes.is_empty() {
            st.close_notes.remove(&slot);
        }
        if !st.backlogs.is_empty() {
            st.backlogs.remove(&slot);
        }
        if let Some(u) = &conn.user {
            if remove_from_index(&mut st.users, u, slot) {
                st.interest.remove(|| Key::User(u.clone()));
            }
        }
        for ch in &conn.channels {
            if remove_from_index(&mut st.channels, ch, slot) {
                st.interest.remove(|| Key::Channel(ch.clone()));
            }
            if let Some(p) = &st.presence {
                p.leave(ch, conn.id);
            }
            if let Some(h) = &st.history {
                if h.is_history(ch) {
                    h.detach(ch);
                }
            }
        }
        st.subscriptions -= conn.channels.len();
        self.update_gauges(st);
        self.metrics.connections.decrement(1.0);
        if conn.sse {
            self.metrics.sse_connections.decrement(1.0);
        }
        if conn.alt {
            self.metrics.dialect_connections.decrement(1.0);
        }
        self.metrics.closed(reason).increment(1);
    }

    /// Enqueues a frame for one connection of this shard (replies, pongs).
    pub(crate) fn send(&self, slot: usize, frame: Bytes) {
        let mut st = self.state.lock();
        self.send_locked(&mut st, slot, frame);
    }

    /// [`Shard::send`] with the lock held.
    pub(crate) fn send_locked(&self, st: &mut ShardState, slot: usize, frame: Bytes) {
        let limits = self.limits;
        if let Some(c) = st.conns.get_mut(slot) {
            if c.outbound.push(frame, &limits) == crate::outbound::Push::Disconnected {
                self.metrics.slow_disconnects.increment(1);
            }
        }
    }

    /// Enqueues one frame for each of these connections of this shard still here,
    /// under one lock.
    pub(crate) fn send_to_each(&self, ids: &[ConnId], frame: &Bytes) {
        let mut st = self.state.lock();
        for id in ids {
            if let Some(&slot) = st.by_id.get(id) {
                self.send_locked(&mut st, slot, frame.clone());
            }
        }
    }

    /// [`Shard::send_to_each`] of `frame` (if any), with `alt` (if any) for the
    /// dialect's connections instead.
    pub(crate) fn send_to_each_alt(
        &self,
        ids: &[ConnId],
        frame: Option<&Bytes>,
        alt: Option<&Bytes>,
    ) {
        let mut st = self.state.lock();
        for id in ids {
            if let Some(&slot) = st.by_id.get(id) {
                let f = if st.conns[slot].alt { alt } else { frame };
                if let Some(f) = f {
                    self.send_locked(&mut st, slot, f.clone());
                }
            }
        }
    }

    /// Enqueues a frame for a connection of this shard by id, if it is still here.
    pub(crate) fn send_to(&self, id: ConnId, frame: Bytes) {
        let slot = self.state.lock().by_id.get(&id).copied();
        if let Some(slot) = slot {
            self.send(slot, frame);
        }
    }

    /// Closes every connection of this shard with `reason` (shutdown, drain).
    pub fn close_all(&self, reason: CloseReason) {
        let mut st = self.state.lock();
        for (_, c) in st.conns.iter_mut() {
            c.outbound.close(reason);
        }
    }

    /// Closes one connection if it lives here. Returns whether it did.
    pub fn close(&self, id: ConnId, reason: CloseReason) -> bool {
        let mut st = self.state.lock();
        let Some(&slot) = st.by_id.get(&id) else {
            return false;
        };
        st.conns[slot].outbound.close(reason);
        true
    }

    /// Closes one connection with an operator's close code and reason.
    pub fn close_with(&self, id: ConnId, code: u16, text: &str) -> bool {
        let mut st = self.state.lock();
        let Some(&slot) = st.by_id.get(&id) else {
            return false;
        };
        note_and_close(&mut st, slot, code, text);
        true
    }

    /// Closes every connection of `user` with an operator's close code and reason.
    pub fn close_user_with(&self, user: &str, code: u16, text: &str) -> usize {
        let mut st = self.state.lock();
        let slots = st.user_slots(user);
        for &slot in &slots {
            note_and_close(&mut st, slot, code, text);
        }
        slots.len()
    }

    /// Takes the operator's close code and reason for a connection, if one was set.
    pub(crate) fn take_close_note(&self, slot: usize) -> Option<(u16, Box<str>)> {
        let mut st = self.state.lock();
        if st.close_notes.is_empty() {
            return None;
        }
        st.close_notes.remove(&slot)
    }

    /// Server-side subscribe of one connection; `None` if it is not on this shard.
    pub(crate) fn subscribe_conn(
        &self,
        id: ConnId,
        channels: &[String],
    ) -> Option<Result<(), SubscribeError>> {
        let max = self.config.max_subscriptions_per_conn;
        let mut st = self.state.lock();
        let slot = *st.by_id.get(&id)?;
        let r = st
            .subscribe(slot, channels, max)
            .map(drop)
            .map_err(SubscribeError::TooMany);
        self.update_gauges(st);
        Some(r)
    }

    /// Server-side subscribe of each connection of `user` on this shard.
    pub(crate) fn subscribe_user(&self, user: &str, channels: &[String]) -> AdminReport {
        let max = self.config.max_subscriptions_per_conn;
        let mut st = self.state.lock();
        let slots = st.user_slots(user);
        let mut r = AdminReport::default();
        for slot in slots {
            match st.subscribe(slot, channels, max) {
                Ok(_) => r.applied += 1,
                Err(_) => r.refused += 1,
            }
        }
        self.update_gauges(st);
        r
    }

    /// Server-side unsubscribe of one connection. Returns whether it is on this shard.
    pub(crate) fn unsubscribe_conn(&self, id: ConnId, channels: &[String]) -> bool {
        let mut st = self.state.lock();
        let Some(&slot) = st.by_id.get(&id) else {
            return false;
        };
        st.unsubscribe(slot, channels);
        self.update_gauges(st);
        true
    }

    /// Server-side unsubscribe of each connection of `user` on this shard.
    pub(crate) fn unsubscribe_user(&self, user: &str, channels: &[String]) -> usize {
        let mut st = self.state.lock();
        let slots = st.user_slots(user);
        for &slot in &slots {
            st.unsubscribe(slot, channels);
        }
        self.update_gauges(st);
        slots.len()
    }

    /// Publishes the subscription gauges from the shard's counts, after releasing the
    /// lock: the one place they are set (connections, handles and operators' calls).
    pub(crate) fn update_gauges(&self, st: parking_lot::MutexGuard<'_, ShardState>) {
        let (subs, chans) = (st.subscriptions, st.channels.len());
        drop(st);
        self.metrics.subscriptions.set(subs as f64);
        self.metrics.channels.set(chans as f64);
    }

    /// Connection and subscription counts; adds this shard's channel names to `channels`.
    /// For stats and admin calls only: it copies every channel name.
    pub fn counts_into(&self, channels: &mut AHashSet<Box<str>>) -> (usize, usize) {
        let st = self.state.lock();
        channels.extend(st.channels.keys().cloned());
        (st.conns.len(), st.subscriptions)
    }

    /// Ids of every connection on this shard (drain, admin).
    pub fn conn_ids(&self) -> Vec<ConnId> {
        self.state.lock().conns.iter().map(|(_, c)| c.id).collect()
    }

    /// Adds the subscribers of each channel of this shard whose name starts with
    /// `prefix` to `out`: one pass under the lock, copying only the matching names
    /// (cluster-wide channel counts, docs/cluster.md "Census"). Stops once `out`
    /// holds more than `max` names: the caller only needs to know there are more.
    pub fn channel_counts_into(
        &self,
        prefix: &str,
        max: usize,
        out: &mut AHashMap<Box<str>, usize>,
    ) {
        let st = self.state.lock();
        for (name, subs) in st.channels.iter().filter(|(n, _)| n.starts_with(prefix)) {
            if out.len() > max && !out.contains_key(name) {
                return;
            }
            *out.entry(name.clone()).or_default() += subs.len();
        }
    }

    /// Subscribers of `channel` on this shard.
    pub fn channel_subscribers(&self, channel: &str) -> usize {
        self.state
            .lock()
            .channels
            .get(channel)
            .map_or(0, |s| s.len())
    }

    /// Connections of `user` on this shard.
    pub fn user_conns(&self, user: &str) -> Vec<ConnId> {
        let st = self.state.lock();
        st.users
            .get(user)
            .map(|s| s.iter().map(|&slot| st.conns[slot].id).collect())
            .unwrap_or_default()
    }
}

fn note_and_close(st: &mut ShardState, slot: usize, code: u16, text: &str) {
    if st.conns[slot].outbound.closing.is_none() {
        st.close_notes.insert(slot, (code, text.into()));
        st.conns[slot].outbound.close(CloseReason::Disconnected);
    }
}

/// Removes `slot` from `key`'s set; true if that emptied (and removed) the key.
fn remove_from_index(
    index: &mut AHashMap<Box<str>, AHashSet<usize>>,
    key: &str,
    slot: usize,
) -> bool {
    if let Some(set) = index.get_mut(key) {
        set.remove(&slot);
        if set.is_empty() {
            index.remove(key);
            return true;
        }
    }
    false
}

impl ShardState {
    /// The slots of `user`'s connections (admin calls; copies them so the caller can
    /// modify the state while walking them).
    pub(crate) fn user_slots(&self, user: &str) -> Vec<usize> {
        self.users
            .get(user)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Adds channels to a connection, up to `max` in total. Returns how many were new.
    pub(crate) fn subscribe(
        &mut self,
        slot: usize,
        channels: &[String],
        max: usize,
    ) -> Result<usize, usize> {
        self.subscribe_as(slot, channels, max, None)
    }

    /// [`ShardState::subscribe`], joining presence channels as `member` (user and info)
    /// rather than as the connection's user and token `info`, and watching their
    /// events (the dialect's presence: a member per subscription).
    pub(crate) fn subscribe_as(
        &mut self,
        slot: usize,
        channels: &[String],
        max: usize,
        member: Option<(&str, Option<&Arc<str>>)>,
    ) -> Result<usize, usize> {
        let conn = &mut self.conns[slot];
        let new: Vec<&String> = channels
            .iter()
            .filter(|c| !conn.channels.iter().any(|have| **have == ***c))
            .collect();
        // Deduplicate within the command too.
        let mut uniq: Vec<&String> = Vec::with_capacity(new.len());
        for c in new {
            if !uniq.contains(&c) {
                uniq.push(c);
            }
        }
        if conn.channels.len() + uniq.len() > max {
            return Err(max);
        }
        for ch in &uniq {
            conn.channels.push(ch.as_str().into());
            let set = self.channels.entry(ch.as_str().into()).or_default();
            set.insert(slot);
            if set.len() == 1 {
                self.interest.add(|| Key::Channel(ch.as_str().into()));
            }
            if let Some(h) = &self.history {
                h.attach(ch);
            }
        }
        if let Some(p) = &self.presence {
            let conn = &self.conns[slot];
            match member {
                Some((user, info)) => {
                    for ch in &uniq {
                        p.join(ch, conn.id, Some(user), info);
                        p.watch(ch, conn.id);
                    }
                }
                None => {
                    let info = self.grants.get(&slot).and_then(|g| g.grant.info.as_ref());
                    for ch in &uniq {
                        p.join(ch, conn.id, conn.user.as_deref(), info);
                    }
                }
            }
        }
        self.subscriptions += uniq.len();
        Ok(uniq.len())
    }

    /// Removes channels from a connection; unknown ones are ignored.
    pub(crate) fn unsubscribe(&mut self, slot: usize, channels: &[String]) {
        let conn = &mut self.conns[slot];
        for ch in channels {
            if let Some(i) = conn.channels.iter().position(|have| **have == **ch) {
                conn.channels.swap_remove(i);
                self.subscriptions -= 1;
                if remove_from_index(&mut self.channels, ch, slot) {
                    self.interest.remove(|| Key::Channel(ch.as_str().into()));
                }
                if let Some(p) = &self.presence {
                    p.leave(ch, conn.id);
                }
                if let Some(h) = &self.history {
                    if h.is_history(ch) {
                        h.detach(ch);
                    }
                }
            }
        }
    }
}
