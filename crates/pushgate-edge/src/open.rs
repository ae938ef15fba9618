//! One open WebSocket connection, as the shard's poller (`poller.rs`) holds it: its
//! socket (registered in the poller, not in tokio), its read state and its write
//! queue, and one step of its work: read what arrived, write what the shard queued.
//!
//! The step is the body of what used to be the connection's own task; its bounds
//! are the same: at most [`READ_BUDGET`] bytes read and [`POLL_BUDGET`] readiness
//! events handled per turn, so that a client that never stops sending cannot keep
//! its shard from the other connections.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use pushgate_hub::{CloseReason, Outgoing};

use crate::connection::{release_if_small, Connection, Place};
use crate::reader::{End, ReadState, READ_BUDGET};
use crate::writer::flush;
use crate::EdgeShared;

/// Most readiness events handled in one turn before the poller serves the others.
const POLL_BUDGET: usize = 32;

/// How the open phase of a connection ended.
pub(crate) enum Next {
    /// The read side stopped (EOF, client close, protocol violation).
    End(End),
    /// The shard asked for a close (slow consumer, heartbeat, shutdown, disconnect).
    Close(CloseReason),
}

/// What one turn left to do.
pub(crate) enum Turn {
    /// Nothing until the socket or the shard has news (an event, a wake-up).
    Idle,
    /// A budget ran out with work left: serve it again after the others.
    More,
    /// The open phase is over.
    Done(Next),
}

/// An open connection: 136 bytes, in the poller's slab (asserted by a unit test).
pub(crate) struct Open {
    pub(crate) stream: mio::net::TcpStream,
    pub(crate) place: Place,
    read: ReadState,
    /// Frames taken from the shard queue and not yet fully written.
    out: VecDeque<Bytes>,
    /// Marks this connection ready in its poller (`poller::SlotWake`): what the shard
    /// holds to tell it that frames were queued or a close was asked for.
    waker: Waker,
    /// The socket's readiness as the poller last heard of it (edge-triggered events
    /// arrive once: these remember them until a read or write finds the socket empty
    /// or full).
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// In the poller's run queue already.
    pub(crate) queued: bool,
}

impl Open {
    /// The open phase of a connection, its socket now `stream`. The socket may
    /// already have data (or room to write): it starts readable and writable, and a
    /// read or write that finds otherwise clears that.
    pub(crate) fn new(
        stream: mio::net::TcpStream,
        place: Place,
        read: ReadState,
        out: VecDeque<Bytes>,
        waker: Waker,
    ) -> Open {
        Open {
            stream,
            place,
            read,
            out,
            waker,
            readable: true,
            writable: true,
            queued: false,
        }
    }

    /// Back to a tokio socket, for the closing phase (the socket must have left the
    /// poller's epoll instance first).
    pub(crate) fn into_connection(self) -> std::io::Result<Connection> {
        let Open {
            stream,
            place,
            read,
            out,
            ..
        } = self;
        let std: std::net::TcpStream = stream.into();
        Ok(Connection {
            stream: tokio::net::TcpStream::from_std(std)?,
            place,
            read,
            out,
        })
    }

    /// Whether frames wait for room in the socket.
    pub(crate) fn waits_to_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Reads what arrived, writes what the shard queued, within the budgets.
    pub(crate) fn turn(&mut self, edge: &EdgeShared) -> Turn {
        let handle = &self.place.handle;
        if let Err(end) = self.read.process_partial(handle, edge) {
            return Turn::Done(Next::End(end));
        }
        let mut cx = Context::from_waker(&self.waker);
        let mut read_budget = READ_BUDGET;
        for _ in 0..POLL_BUDGET {
            let flushing = !self.out.is_empty();
            if read_budget > 0 && self.readable {
                match self
                    .read
                    .on_readable(&self.stream, handle, edge, &mut read_budget)
                {
                    Ok(more) => self.readable = more,
                    Err(end) => return Turn::Done(Next::End(end)),
                }
                continue;
            }
            if !(flushing && self.writable) {
                match handle.poll_outgoing(&mut cx, &mut self.out, !flushing) {
                    Poll::Ready(Outgoing::Frames) => {}
                    Poll::Ready(Outgoing::Close(reason)) => return Turn::Done(Next::Close(reason)),
                    Poll::Pending if read_budget == 0 => return Turn::More, // more to read
                    Poll::Pending => {
                        // Idle (or waiting for room to write): the shard's wake-up or
                        // the socket's next event brings the connection back.
                        release_if_small(&mut self.out);
                        return Turn::Idle;
                    }
                }
            }
            match flush(&self.stream, &mut self.out, handle.shard().metrics()) {
                Ok(all) => self.writable = all,
                Err(_) => return Turn::Done(Next::End(End::Lost)),
            }
            if self.out.is_empty() && self.out.capacity() > 64 {
                self.out = VecDeque::new(); // a big burst is over: give the memory back
            }
        }
        Turn::More
    }
}

#[cfg(test)]
mod tests {
    /// An open connection's whole state in its poller: the idle-memory budget depends
    /// on it (docs/benchmarks.md, "Idle memory per connection").
    #[test]
    fn an_open_connection_stays_small() {
        // 136 bytes: socket 4, place (shard handle 32, edge 8), read state 32, write
        // queue 32, waker 16, readiness flags 3, padding.
        let open = std::mem::size_of::<super::Open>();
        assert!(open <= 136, "an open connection grew to {open} bytes");
        // A slot of the poller's slab, shaped as `slab`'s (private) entry type.
        #[allow(dead_code)]
        enum Slot {
            Vacant(usize),
            Occupied(super::Open),
        }
        let slot = std::mem::size_of::<Slot>();
        assert!(
            slot <= 136,
            "a slot of the poller's slab grew to {slot} bytes"
        );
    }
}
