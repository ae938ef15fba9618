//! The shard's poller: one task per shard that serves every open WebSocket connection
//! of the shard, instead of one task per connection.
//!
//! Why: an idle connection's own task (a 256-byte cell) and tokio registration of its
//! socket (a 256-byte `Arc<ScheduledIo>`) were 512 of its ~650 bytes
//! (docs/benchmarks.md, "Idle memory per connection"). Here a connection is an entry
//! of a slab (`open.rs`, 136 bytes) and its socket is registered in one epoll
//! instance per shard (mio's `Poll`), which is registered with tokio once, as an
//! `AsyncFd`. The token of a socket is its slab key.
//!
//! Two things make a connection ready: its socket's events (edge-triggered: the entry
//! remembers them, `Open::readable`/`writable`) and the shard (frames queued, a close
//! asked for), which wakes the connection's [`SlotWake`]: it puts the key in the
//! poller's inbox and wakes the poller's task once. Ready connections wait in a run
//! queue and are served in rounds: one turn each (within its read and event budgets)
//! for the connections ready when the round starts, at most [`ROUND`]. After a round
//! in which a publication waits for the shard, or after [`ROUNDS_PER_POLL`] rounds,
//! the poller yields to the shard's other tasks (its fan-out loop, handshakes) and to
//! the runtime's look for socket events, as each connection's task used to, and offers
//! its core to the other threads waiting for it (`sched_yield`).
//!
//! The handshake and the closing phase stay short-lived tokio tasks: a connection is
//! handed over (`Link::adopt`) once its upgrade is answered, and handed back
//! (deregistered first) to a task of its own to close.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use mio::{Events, Interest, Token};
use pushgate_hub::CloseReason;
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio_util::task::task_tracker::TaskTrackerToken;

use crate::connection::Connection;
use crate::open::{Next, Open, Turn};
use crate::reader::End;
use crate::EdgeShared;

/// Most connection turns per round, after which the poller yields to the shard's other
/// tasks if a publication waits for the shard.
///
/// Small, because the fan-out loop must run often during a burst: a publisher waits
/// for its publication to be fanned out, so long rounds of writes slow the
/// publications down and each write then carries fewer frames (unbounded rounds: 16×
/// the writes of 16-turn rounds; docs/benchmarks.md, "The shard poller", has the
/// measurements). Tokio's scheduler, which ran a task per connection before, looked
/// at tasks woken from other threads every 31 task polls.
const ROUND: usize = 16;

/// Most rounds in one poll of the poller's task, while no publication waits for the
/// shard: [`ROUND`] × this many turns (64) between two looks of the runtime for
/// socket events and other tasks, about what tokio's scheduler ran between two looks
/// when each connection was a task of its own (61 task polls).
///
/// Why not one round per poll: each yield is a look, an `epoll_wait` and a pass over
/// the runtime's timers; at 1,000 connections × 100 publications/s that was one look
/// per 16 writes (docs/benchmarks.md, "Steady state: the runtime's looks"). A waiting
/// publication still ends the poll after one round: the burst needs its fan-out loop
/// to run often (see [`ROUND`]).
const ROUNDS_PER_POLL: usize = 4;

/// Socket events taken from the epoll instance at once.
const EVENTS: usize = 1024;

/// What other tasks and threads hand the poller: adopted connections and keys of
/// connections the shard made ready. One per shard; shared by every [`SlotWake`].
#[derive(Default)]
pub(crate) struct Link {
    inbox: Mutex<Inbox>,
}

#[derive(Default)]
struct Inbox {
    adopted: Vec<Connection>,
    /// Keeps shutdown waiting while adopted connections wait here: the handshake's
    /// task, which the shutdown also waits for, has ended.
    adopting: Option<TaskTrackerToken>,
    ready: Vec<usize>,
    /// The poller's task, while it waits.
    waker: Option<Waker>,
}

impl Link {
    /// Hands an upgraded connection to the poller (from the handshake's task, on the
    /// shard's thread).
    pub(crate) fn adopt(&self, conn: Connection) {
        let token = conn.place.edge.tasks.token();
        self.post(|inbox| {
            inbox.adopted.push(conn);
            inbox.adopting.get_or_insert(token);
        });
    }

    fn post(&self, f: impl FnOnce(&mut Inbox)) {
        let waker = {
            let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut inbox);
            inbox.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Swaps the inbox's connections and keys with `adopted` and `ready` (empty), and
    /// leaves the task's waker; returns the shutdown token of the adopted ones.
    fn take(
        &self,
        cx: &Context<'_>,
        adopted: &mut Vec<Connection>,
        ready: &mut Vec<usize>,
    ) -> Option<TaskTrackerToken> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut inbox.adopted, adopted);
        std::mem::swap(&mut inbox.ready, ready);
        match &inbox.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => inbox.waker = Some(cx.waker().clone()),
        }
        inbox.adopting.take()
    }
}

/// The waker an open connection registers with its shard queue (`Outbound`): waking
/// it marks the connection ready in its poller. 32 bytes per connection, allocated
/// once when the connection opens.
struct SlotWake {
    key: usize,
    link: Arc<Link>,
}

impl Wake for SlotWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let key = self.key;
        self.link.post(|inbox| inbox.ready.push(key));
    }
}

/// The poller's task (see the module's documentation).
pub(crate) struct Poller {
    epoll: AsyncFd<mio::Poll>,
    events: Events,
    conns: Slab<Open>,
    /// Keys of connections with work, each at most once (`Open::queued`) in `run`
    /// or `later`.
    run: VecDeque<usize>,
    /// Connections whose turn ended with work left (a budget ran out): they join the
    /// run queue at the next round, after the connections that became ready meanwhile.
    later: VecDeque<usize>,
    link: Arc<Link>,
    /// What the inbox held, swapped out under its lock (kept to reuse the memory).
    adopted: Vec<Connection>,
    ready: Vec<usize>,
    edge: Arc<EdgeShared>,
    /// Held while the poller has connections, so that shutdown (which waits for the
    /// edge's tasks) waits for them too.
    busy: Option<TaskTrackerToken>,
    /// The shard's index in the hub (are publications waiting for it?).
    shard: usize,
}

impl Poller {
    /// A poller for the shard whose runtime is current (its epoll instance is
    /// registered with that runtime).
    pub(crate) fn new(
        shard: usize,
        link: Arc<Link>,
        edge: Arc<EdgeShared>,
    ) -> std::io::Result<Poller> {
        // `AsyncFd::new` is deprecated for `unsafe fn register`, whose condition (the
        // descriptor stays open and the same while registered) a `mio::Poll` meets: it
        // owns its epoll descriptor for its whole life. The workspace forbids `unsafe`.
        #[allow(deprecated)]
        let epoll = AsyncFd::new(mio::Poll::new()?)?;
        Ok(Poller {
            epoll,
            events: Events::with_capacity(EVENTS),
            conns: Slab::with_capacity(pushgate_hub::RESERVED_CONNS),
            run: VecDeque::new(),
            later: VecDeque::new(),
            link,
            adopted: Vec::new(),
            ready: Vec::new(),
            edge,
            busy: None,
            shard,
        })
    }

    /// Registers the adopted connections' sockets and queues them for a first turn
    /// (the client may have sent a command with its upgrade request). `token` keeps
    /// shutdown waiting for them from now on, if nothing else does.
    fn adopt(&mut self, token: Option<TaskTrackerToken>) {
        for conn in std::mem::take(&mut self.adopted) {
            let Connection {
                stream,
                place,
                read,
                out,
            } = conn;
            // Leaving tokio's registration: the socket is registered here instead.
            let Ok(std) = stream.into_std() else {
                place.handle.set_reason(CloseReason::ConnectionLost);
                continue;
            };
            let mut stream = mio::net::TcpStream::from_std(std);
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            let registry = self.epoll.get_ref().registry();
            let interest = Interest::READABLE | Interest::WRITABLE;
            if registry
                .register(&mut stream, Token(key), interest)
                .is_err()
            {
                place.handle.set_reason(CloseReason::ConnectionLost);
                continue;
            }
            let waker = Waker::from(Arc::new(SlotWake {
                key,
                link: self.link.clone(),
            }));
            entry.insert(Open::new(stream, place, read, out, waker));
            self.enqueue(key);
        }
        if self.busy.is_none() && !self.conns.is_empty() {
            self.busy = token;
        }
    }

    fn enqueue(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key) {
            if !c.queued {
                c.queued = true;
                self.run.push_back(key);
            }
        }
    }

    /// Takes the socket events the epoll instance has, without waiting, and queues
    /// their connections. Returns whether it left some (the task must come back for
    /// them); otherwise tokio wakes the task once the epoll instance has new ones.
    fn take_events(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let mut guard = match self.epoll.poll_read_ready_mut(cx) {
                Poll::Ready(Ok(guard)) => guard,
                Poll::Ready(Err(e)) => {
                    tracing::error!(error = %e, "shard poller: epoll readiness failed");
                    return false;
                }
                Poll::Pending => return false,
            };
            let polled = guard
                .get_inner_mut()
                .poll(&mut self.events, Some(Duration::ZERO));
            if let Err(e) = polled {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(error = %e, "shard poller: epoll_wait failed");
                return false;
            }
            let full = self.events.iter().count() == EVENTS;
            if !full {
                // Drained: the next readiness of the epoll instance wakes the task.
                guard.clear_ready();
            }
            drop(guard);
            for ev in self.events.iter() {
                let key = ev.token().0;
                let Some(c) = self.conns.get_mut(key) else {
                    continue; // closed since
                };
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    c.readable = true;
                }
                let readable = c.readable;
                if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                    c.writable = true;
                }
                // Room to write matters only to a connection with frames waiting for
                // it (a socket reports it again as the client acknowledges data).
                if (readable || c.waits_to_write()) && !c.queued {
                    c.queued = true;
                    self.run.push_back(key);
                }
            }
            if full {
                return true;
            }
        }
    }

    /// One turn of the connection in `key`.
    fn serve(&mut self, key: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let turn = c.turn(&self.edge);
        if !matches!(turn, Turn::More) {
            c.queued = false;
        }
        match turn {
            Turn::Idle => {}
            Turn::More => self.later.push_back(key), // still `queued`
            Turn::Done(next) => {
                let mut open = self.conns.remove(key);
                let _ = self.epoll.get_ref().registry().deregister(&mut open.stream);
                self.finish(open, next);
                if self.conns.is_empty() {
                    self.busy = None;
                }
            }
        }
    }

    /// Hands a connection whose open phase ended to a closing task of its own (the
    /// close handshake has timers and buffers, which only closing connections pay for).
    fn finish(&self, open: Open, next: Next) {
        if let Next::End(End::Lost) = next {
            // Nothing to send: the socket is closed as the entry drops.
            open.place.handle.set_reason(CloseReason::ConnectionLost);
            return;
        }
        // Should tokio refuse the socket, the parts drop here: the place is given back.
        if let Ok(conn) = open.into_connection() {
            self.edge.tasks.spawn(conn.finish(next));
        }
    }
}

impl Future for Poller {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let token = this.link.take(cx, &mut this.adopted, &mut this.ready);
        if !this.adopted.is_empty() {
            this.adopt(token);
        }
        let mut ready = std::mem::take(&mut this.ready);
        for &key in &ready {
            this.enqueue(key);
        }
        ready.clear();
        this.ready = ready; // its memory serves the next swap

        let events_left = this.take_events(cx);
        // A client that keeps its connection busy (a flood) goes after those that
        // became ready meanwhile, as its task did after the tasks the runtime woke.
        this.run.append(&mut this.later);
        // One turn each for the connections ready now, at most ROUND: one with work
        // left (a flooding client) goes to the back and waits for the next round. More
        // rounds in this poll only while no publication waits for the shard.
        for _ in 0..ROUNDS_PER_POLL {
            for _ in 0..this.run.len().min(ROUND) {
                let Some(key) = this.run.pop_front() else {
                    break;
                };
                this.serve(key);
            }
            if this.run.is_empty() || this.edge.hub.publications_waiting(this.shard) {
                break;
            }
        }
        if events_left || !this.run.is_empty() || !this.later.is_empty() {
            // Work left: serve it after the shard's other tasks had their turn, and
            // after the runtime has looked for socket events; let the threads waiting
            // for this core run first.
            yield_core();
            yield_to_others(cx);
        }
        // Otherwise the inbox or the epoll instance wakes the task.
        Poll::Pending
    }
}

/// Offers this core to the other threads waiting for it before the poller's next round
/// (`sched_yield`; returns at once when none waits). It changes who runs first, not the
/// shard's share of the core: Linux's fair scheduler moves the yielding thread's
/// deadline back by one time slice and leaves its accounted runtime as it is.
///
/// Why: a shard thread with writes left stays on its core until the kernel preempts it.
/// The threads that wait meanwhile are the node's own (the ingress handing over the next
/// publication, the other shards' and the broker's work) and whatever shares the host
/// (a proxy in front, or, in the benchmarks, the load generator reading what was just
/// written). With one shard per core they wait for that preemption in every fan-out
/// larger than a round: at 1,000 connections × 100 publications/s on 2 cores beside a
/// one-thread client, the median delivery's latency fell from 4.2 to 2.9 ms and the
/// p99's from 9.3 to 7.6, for the same CPU per delivery and a burst no slower
/// (docs/benchmarks.md, "Steady state: the shards give their core away"). Once per poll
/// that leaves work, that is after at most [`ROUND`] × [`ROUNDS_PER_POLL`] turns:
/// yielding after every round switched 3× as often for no further gain.
fn yield_core() {
    std::thread::yield_now();
}

/// Schedules this task to run again after the shard's other ready work *and* after the
/// runtime has looked for new socket events.
///
/// A plain `wake_by_ref` would put the task straight back on the run queue, and tokio's
/// current-thread scheduler polls for socket events only every 61 task polls or when
/// the queue is empty: the connections whose requests wait in the kernel would be
/// noticed late (measured with a task per connection: 290 ms ping round trips beside
/// an empty-pong flood in a debug build), and so would tasks woken from other threads
/// (the fan-out loop, handed a publication), which wait in another queue. `yield_now`
/// defers the wake-up until after the next event poll; its first poll registers that
/// and is all we need of it.
fn yield_to_others(cx: &mut Context<'_>) {
    let mut yielded = std::pin::pin!(tokio::task::yield_now());
    if yielded.as_mut().poll(cx).is_ready() {
        cx.waker().wake_by_ref(); // not expected on a first poll; never lose the wake-up
    }
}
