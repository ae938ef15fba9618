//! One client connection: handshake, then a single task that reads on readiness and
//! writes whatever the shard queued, until either side closes.
//!
//! The task runs on the thread of the shard that owns the connection, next to the
//! shard's fan-out loop. It holds no timers (the shard's sweep does heartbeats) and
//! no read buffer while idle.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use pushgate_hub::{CloseReason, ConnHandle, Outgoing, Shard};
use pushgate_protocol::command::Reply;
use pushgate_protocol::frame::encode_close;
use pushgate_protocol::{CloseCode, ConnId, PROTOCOL_VERSION};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::auth::Identity;
use crate::handshake::{self, Parsed, Refusal};
use crate::reader::{End, ReadState, READ_BUDGET};
use crate::writer::flush;
use crate::EdgeShared;

/// The task that serves one accepted socket to the end, on the owning shard's thread.
///
/// A task's size is that of its largest state, kept for the connection's whole life,
/// so the handshake runs in a boxed future of its own and only the small
/// [`Connection`] stays behind.
pub(crate) fn serve(
    std: std::net::TcpStream,
    id: ConnId,
    shard: Arc<Shard>,
    edge: Arc<EdgeShared>,
) -> ConnTask {
    ConnTask::Accepting(Box::pin(accept(std, id, shard, edge)))
}

/// Handshake and registration (or, on the SSE path, the stream to run); `None` if the
/// client was refused or went away.
async fn accept(
    std: std::net::TcpStream,
    id: ConnId,
    shard: Arc<Shard>,
    edge: Arc<EdgeShared>,
) -> Option<Accepted> {
    let mut stream = TcpStream::from_std(std).ok()?;
    let _ = stream.set_nodelay(true);
    let upgraded = timeout(edge.config.handshake_timeout, upgrade(&mut stream, &edge)).await;
    let up = match upgraded {
        Ok(Ok(Head::WebSocket(v))) => v,
        Ok(Ok(Head::Surface(up))) => return accept_surface(stream, id, shard, edge, up).await,
        Ok(Ok(Head::Sse(head))) => {
            // An event stream runs in a box of its own: this one (the handshake's
            // buffers and timer) is freed now.
            let sse = crate::sse_stream::serve(stream, id, shard, edge, head);
            return Some(Accepted::Sse(Box::pin(sse)));
        }
        Ok(Err(Some(refusal))) => {
            edge.count_refusal(refusal.status);
            handshake::write_refusal(&mut stream, &refusal).await;
            return None;
        }
        Ok(Err(None)) => return None, // the client went away mid-handshake
        Err(_) => {
            edge.count_refusal(408);
            return None; // too slow to send its headers
        }
    };
    let user = up.identity.user.as_deref();
    if let Err(refusal) = edge.admission.admit(user, &edge.limit_metrics) {
        edge.count_refusal(refusal.status);
        handshake::write_refusal(&mut stream, &refusal).await;
        return None;
    }
    // Register before answering, so that a publication to this connection made after
    // the client saw `connected` reaches it.
    let handle = shard.register_with(id, user, up.identity.grant.clone(), &up.identity.subscribe);
    let deflate = edge
        .config
        .compression
        .then(|| crate::deflate::negotiate(&up.req))
        .flatten();
    if let Some(agreed) = deflate {
        handle.set_deflate(agreed.window_bits());
    }
    let conn_str = id.display(&edge.hub.config().node_id).to_string();
    let connected = Reply::Connected {
        v: PROTOCOL_VERSION,
        conn: &conn_str,
        user,
        heartbeat_ms: edge.hub.config().heartbeat_interval.as_millis() as u64,
        channels: &up.identity.subscribe,
    }
    .to_frame();
    // The 101 response and the `connected` message go out in one write, and the
    // connection's queue never allocates for them.
    let extensions = deflate.map(|a| a.response());
    if handshake::write_switching(
        &mut stream,
        &up.key,
        &up.req,
        extensions.as_deref(),
        &connected,
    )
    .await
    .is_err()
    {
        // (Were this task dropped mid-write, at runtime shutdown, the place would
        // leak; nothing counts after that.)
        edge.admission.release(user);
        return None;
    }
    let leftover = up.leftover;
    Some(Accepted::WebSocket(Connection {
        stream,
        handle,
        read: ReadState::with_leftover(leftover),
        out: VecDeque::new(),
        edge,
    }))
}

/// Answers an upgrade for the second protocol (`surface.rs`): no pushgate.v1
/// authentication (the protocol has its own), no compression; refusals (its own, or
/// the node's connection limit) are sent as the protocol's frames after the upgrade.
async fn accept_surface(
    mut stream: TcpStream,
    id: ConnId,
    shard: Arc<Shard>,
    edge: Arc<EdgeShared>,
    up: Upgrade,
) -> Option<Accepted> {
    let surface = edge.surface.clone()?;
    let first = match surface.open(&up.req, id) {
        Ok(first) => first,
        Err(frames) => {
            refuse_after_upgrade(&mut stream, &up, &frames, &edge).await;
            return None;
        }
    };
    if edge.admission.admit(None, &edge.limit_metrics).is_err() {
        surface.closed(id);
        edge.count_refusal(503);
        refuse_after_upgrade(&mut stream, &up, &surface.over_capacity(), &edge).await;
        return None;
    }
    // Register before answering, as for pushgate.v1.
    let handle = shard.register_dialect(id);
    if handshake::write_switching(&mut stream, &up.key, &up.req, None, &first)
        .await
        .is_err()
    {
        edge.admission.release(None);
        surface.closed(id);
        return None;
    }
    Some(Accepted::WebSocket(Connection {
        stream,
        handle,
        read: ReadState::with_leftover(up.leftover),
        out: VecDeque::new(),
        edge,
    }))
}

/// Upgrades, sends the protocol's refusal (ending with a close frame) and waits
/// briefly for the client's close.
async fn refuse_after_upgrade(
    stream: &mut TcpStream,
    up: &Upgrade,
    frames: &[u8],
    edge: &EdgeShared,
) {
    if handshake::write_switching(stream, &up.key, &up.req, None, frames)
        .await
        .is_ok()
    {
        let _ = timeout(edge.config.close_timeout, linger(stream)).await;
    }
}

/// An accepted upgrade request, not yet answered.
struct Upgrade {
    req: handshake::UpgradeRequest,
    key: String,
    identity: Identity,
    /// Bytes received after the request head: the start of the first frame.
    leftover: Vec<u8>,
}

/// What an accepted request became.
pub(crate) enum Accepted {
    WebSocket(Connection),
    Sse(Pin<Box<dyn Future<Output = ()> + Send>>),
}

/// What a request head asks for.
enum Head {
    WebSocket(Upgrade),
    /// A request for the SSE path (`sse.rs`), checked and answered by the stream.
    Sse(crate::sse::SseHead),
    /// An upgrade for the second protocol's paths (`surface.rs`), not authenticated.
    Surface(Upgrade),
}

/// Reads and checks the upgrade request (path, origin, token) and authenticates it.
async fn upgrade(stream: &mut TcpStream, edge: &EdgeShared) -> Result<Head, Option<Refusal>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        stream.readable().await.map_err(|_| None)?;
        match stream.try_read(&mut chunk) {
            Ok(0) => return Err(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return Err(None),
        }
        if let Some(sse) = crate::sse::parse(&buf, &edge.config.sse_path).map_err(Some)? {
            return Ok(Head::Sse(sse));
        }
        let served = |p: &str| edge.surface.as_ref().is_some_and(|s| s.serves(p));
        match handshake::parse_for(&buf, &edge.config.ws_path, served).map_err(Some)? {
            Parsed::Partial => continue,
            Parsed::Complete(req, key, n) => {
                if !edge.origin_allowed(&req) {
                    return Err(Some(Refusal::new(403, "origin not allowed")));
                }
                if req.path != edge.config.ws_path {
                    buf.drain(..n);
                    return Ok(Head::Surface(Upgrade {
                        req,
                        key,
                        identity: Identity::default(),
                        leftover: buf,
                    }));
                }
                let identity = edge.auth.authenticate(&req).map_err(Some)?;
                let max = edge.hub.config().max_subscriptions_per_conn;
                if identity.subscribe.len() > max {
                    return Err(Some(Refusal::new(
                        403,
                        format!(
                            "the token subscribes to {} channels; the limit is {max}",
                            identity.subscribe.len()
                        ),
                    )));
                }
                buf.drain(..n);
                let leftover = if buf.is_empty() { Vec::new() } else { buf };
                return Ok(Head::WebSocket(Upgrade {
                    req,
                    key,
                    identity,
                    leftover,
                }));
            }
        }
    }
}

pub(crate) struct Connection {
    stream: TcpStream,
    handle: ConnHandle,
    read: ReadState,
    /// Frames taken from the shard queue and not yet fully written.
    out: VecDeque<Bytes>,
    edge: Arc<EdgeShared>,
}

/// How the open phase of a connection ended.
enum Next {
    /// The read side stopped (EOF, client close, protocol violation).
    End(End),
    /// The shard asked for a close (slow consumer, heartbeat, shutdown, disconnect).
    Close(CloseReason),
}

/// Capacity of the smallest queue allocation (`VecDeque<Bytes>`: 4 × 32 bytes); see
/// [`Connection::release_small_spare`].
const SMALL_SPARE: usize = 4;

/// Most readiness events handled in one poll before yielding to the shard's other tasks.
const POLL_BUDGET: usize = 32;

/// The task of one connection: a hand-written future, so that an open connection's
/// task holds only the [`Connection`] itself. Readiness wakers live in tokio's socket
/// registration (`poll_read_ready`), not in waiter nodes of `select!`-ed futures, and
/// the closing phase (timers, buffers) is boxed only when it starts.
pub(crate) enum ConnTask {
    Accepting(Pin<Box<dyn Future<Output = Option<Accepted>> + Send>>),
    Open(Connection),
    /// A Server-Sent Events stream (`sse_stream.rs`), to its end.
    Sse(Pin<Box<dyn Future<Output = ()> + Send>>),
    Closing(Pin<Box<dyn Future<Output = ()> + Send>>),
    Done,
}

impl Future for ConnTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            match this {
                ConnTask::Accepting(fut) => {
                    *this = match ready!(fut.as_mut().poll(cx)) {
                        Some(Accepted::WebSocket(conn)) => ConnTask::Open(conn),
                        Some(Accepted::Sse(stream)) => ConnTask::Sse(stream),
                        None => ConnTask::Done,
                    };
                }
                ConnTask::Sse(fut) => {
                    ready!(fut.as_mut().poll(cx));
                    *this = ConnTask::Done;
                }
                ConnTask::Open(conn) => {
                    let next = ready!(conn.poll_open(cx));
                    let ConnTask::Open(conn) = std::mem::replace(this, ConnTask::Done) else {
                        unreachable!()
                    };
                    *this = ConnTask::Closing(match next {
                        Next::End(end) => Box::pin(conn.end(end)),
                        Next::Close(reason) => Box::pin(conn.close(reason, None)),
                    });
                }
                ConnTask::Closing(fut) => {
                    ready!(fut.as_mut().poll(cx));
                    *this = ConnTask::Done;
                }
                ConnTask::Done => return Poll::Ready(()),
            }
        }
    }
}

impl Connection {
    /// Reads on readiness, writes what the shard queued, until something ends it.
    ///
    /// One call reads at most [`READ_BUDGET`] bytes and handles at most [`POLL_BUDGET`]
    /// readiness events; with work left it wakes itself and yields, so that a client
    /// that never stops sending cannot keep its shard from the other connections.
    fn poll_open(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        let edge = &*self.edge;
        if let Err(end) = self.read.process_partial(&self.handle, edge) {
            return Poll::Ready(Next::End(end));
        }
        let mut read_budget = READ_BUDGET;
        for _ in 0..POLL_BUDGET {
            let flushing = !self.out.is_empty();
            if read_budget > 0 {
                if let Poll::Ready(r) = self.stream.poll_read_ready(cx) {
                    if r.is_err() {
                        return Poll::Ready(Next::End(End::Lost));
                    }
                    let read =
                        self.read
                            .on_readable(&self.stream, &self.handle, edge, &mut read_budget);
                    if let Err(end) = read {
                        return Poll::Ready(Next::End(end));
                    }
                    continue;
                }
            }
            let write = if flushing {
                match self.stream.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => true,
                    Poll::Ready(Err(_)) => return Poll::Ready(Next::End(End::Lost)),
                    Poll::Pending => false,
                }
            } else {
                false
            };
            if !write {
                match self.handle.poll_outgoing(cx, &mut self.out, !flushing) {
                    Poll::Ready(Outgoing::Frames) => {}
                    Poll::Ready(Outgoing::Close(reason)) => {
                        return Poll::Ready(Next::Close(reason))
                    }
                    Poll::Pending if read_budget == 0 => break, // more to read, later
                    Poll::Pending => {
                        self.release_small_spare();
                        return Poll::Pending;
                    }
                }
            }
            if flush(&self.stream, &mut self.out, self.handle.shard().metrics()).is_err() {
                return Poll::Ready(Next::End(End::Lost));
            }
            if self.out.is_empty() && self.out.capacity() > 64 {
                self.out = VecDeque::new(); // a big burst is over: give the memory back
            }
        }
        // Budget spent with work left: let the shard's other connections run first.
        yield_to_others(cx);
        Poll::Pending
    }

    /// Frees the writer's emptied queue when the connection goes idle, if it is of the
    /// smallest size a queue allocates (4 frames, 128 bytes).
    ///
    /// The writer swaps its emptied queue with the shard's, so each side keeps an
    /// allocation for the next burst. For a connection that only ever gets a heartbeat
    /// ping, a reply or a trickle of publications, that is 128 bytes on each side for
    /// its whole idle life (measured: +240 B per idle connection after two heartbeats).
    /// The shard's sweep frees its side; this frees the writer's. A larger queue
    /// means a burst, likely to come back, and is kept (up to 64 frames; a larger one
    /// is freed after each flush).
    fn release_small_spare(&mut self) {
        release_if_small(&mut self.out);
    }

    /// Ends the connection after the read side stopped.
    async fn end(self, end: End) {
        match end {
            End::Lost => self.handle.set_reason(CloseReason::ConnectionLost),
            End::ClientClose(code) => {
                let echo = CloseCode(code.unwrap_or(1000));
                self.close(CloseReason::ClientClosed, Some(echo)).await;
            }
            End::Violation(reason) => self.close(reason, None).await,
        }
    }

    /// Flushes what is pending (unless the close is abortive), sends a close frame,
    /// and waits briefly for the client to close its side.
    async fn close(mut self, reason: CloseReason, echo: Option<CloseCode>) {
        self.handle.set_reason(reason);
        let grace = self.edge.config.close_timeout;
        if reason.is_abortive() {
            self.out.clear();
        } else {
            // Replies the reader queued just before it stopped (to a command sent ahead
            // of a bad frame or of the client's close) still go out, before the close.
            let mut queued = VecDeque::new();
            std::future::poll_fn(|cx| {
                let _ = self.handle.poll_outgoing(cx, &mut queued, true);
                Poll::Ready(())
            })
            .await;
            self.out.append(&mut queued);
        }
        // An operator's disconnect may carry its own code and reason.
        let note = match (echo, reason) {
            (None, CloseReason::Disconnected) => self.handle.take_close_note(),
            _ => None,
        };
        match (&self.edge.surface, echo) {
            // The second protocol closes its own way (its codes, a last message).
            (Some(s), None) if self.handle.is_dialect() => {
                let note = note.as_ref().map(|(c, t)| (*c, &**t));
                self.out.extend(s.closing(reason, note));
            }
            _ => {
                let frame = match (echo, note) {
                    (Some(code), _) => encode_close(code, reason.label()),
                    (None, Some((code, text))) => encode_close(CloseCode(code), &text),
                    (None, None) => encode_close(reason.code(), reason.label()),
                };
                self.out.push_back(frame);
            }
        }
        let flushed = timeout(grace, async {
            loop {
                match flush(&self.stream, &mut self.out, self.handle.shard().metrics()) {
                    Ok(true) => return true,
                    Ok(false) => {
                        if self.stream.writable().await.is_err() {
                            return false;
                        }
                    }
                    Err(_) => return false,
                }
            }
        })
        .await;
        if flushed != Ok(true) || echo.is_some() || reason == CloseReason::InboundFlood {
            // Either the client cannot take the close frame, or it closed first, or it
            // was flooding (whatever it still sends is not worth reading): nothing
            // more to wait for.
            return;
        }
        // Wait for the client's close frame (or EOF) so our close frame is not lost to a
        // reset caused by unread data.
        let _ = timeout(grace, linger(&self.stream)).await;
    }
}

impl Drop for Connection {
    /// Gives back the connection's place in the node and user counts.
    fn drop(&mut self) {
        let admission = &self.edge.admission;
        if self.handle.is_dialect() {
            // Admitted without a user (its sign-in comes later).
            admission.release(None);
            if let Some(s) = &self.edge.surface {
                s.closed(self.handle.id());
            }
        } else if admission.counts_users() {
            admission.release(self.handle.user().as_deref());
        } else {
            admission.release(None);
        }
    }
}

/// Schedules this task to run again after the shard's other ready work *and* after the
/// runtime has looked for new socket events.
///
/// A plain `wake_by_ref` would put the task straight back on the run queue, and tokio's
/// current-thread scheduler polls for socket events only every 61 task polls or when
/// the queue is empty: a client that never stops sending would then be served 61 times
/// before the clients whose requests wait in the kernel are even noticed (measured:
/// 290 ms ping round trips beside an empty-pong flood in a debug build). `yield_now`
/// defers the wake-up until after the next event poll; its first poll registers that
/// and is all we need of it.
fn yield_to_others(cx: &mut Context<'_>) {
    let mut yielded = std::pin::pin!(tokio::task::yield_now());
    if yielded.as_mut().poll(cx).is_ready() {
        cx.waker().wake_by_ref(); // not expected on a first poll; never lose the wake-up
    }
}

/// Frees `out`'s allocation if it is empty and of the smallest size a queue allocates.
fn release_if_small(out: &mut VecDeque<Bytes>) {
    if out.is_empty() && out.capacity() <= SMALL_SPARE {
        *out = VecDeque::new();
    }
}

/// Most bytes read while waiting for the client's close frame.
const LINGER_MAX: usize = 64 * 1024;

/// Reads until the client's close frame or EOF, ignoring everything else, and at most
/// [`LINGER_MAX`] bytes: a client that keeps sending instead of closing is not waited for.
async fn linger(stream: &TcpStream) {
    let mut frames = pushgate_protocol::FrameReader::new();
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    let mut total = 0;
    loop {
        if total > LINGER_MAX {
            return;
        }
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut buf[len..]) {
            Ok(0) => return,
            Ok(n) => {
                len += n;
                total += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        }
        let mut at = 0;
        loop {
            match frames.next(&mut buf[at..len], 1 << 16) {
                Ok(pushgate_protocol::frame::Step::Message(
                    _,
                    pushgate_protocol::Message::Close(..),
                ))
                | Err(_) => return,
                Ok(pushgate_protocol::frame::Step::Message(n, _))
                | Ok(pushgate_protocol::frame::Step::Consumed(n)) => at += n,
                Ok(pushgate_protocol::frame::Step::NeedMore) => break,
            }
        }
        buf.copy_within(at..len, 0);
        len -= at;
        if len == buf.len() {
            return; // a frame larger than we care to buffer while closing
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use bytes::Bytes;

    use super::{release_if_small, SMALL_SPARE};

    /// An idle connection keeps no queue after a ping; after a burst it keeps its spare.
    #[test]
    fn the_writer_keeps_a_spare_queue_only_after_a_burst() {
        let mut out = VecDeque::new();
        out.push_back(Bytes::from_static(b"ping"));
        assert_eq!(out.capacity(), SMALL_SPARE, "the smallest queue allocation");
        out.clear();
        release_if_small(&mut out);
        assert_eq!(out.capacity(), 0, "a lone frame's queue is freed");

        out.extend((0..10).map(|_| Bytes::from_static(b"pub")));
        out.clear();
        release_if_small(&mut out);
        assert!(out.capacity() > SMALL_SPARE, "a burst's queue is kept");

        out.push_back(Bytes::from_static(b"still writing"));
        let before = out.capacity();
        release_if_small(&mut out);
        assert_eq!(
            out.capacity(),
            before,
            "a queue with frames is never touched"
        );
    }

    /// An open connection's whole task state: the idle-memory budget depends on it.
    #[test]
    fn an_open_connection_task_stays_small() {
        let size = std::mem::size_of::<super::ConnTask>();
        // 136 bytes: the inbound meter (8) paid for by boxing the partial-frame buffer
        // (a `Vec`'s 24 bytes down to 8).
        assert!(size <= 144, "ConnTask grew to {size} bytes");
    }
}
