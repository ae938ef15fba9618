//! One client connection's life: the handshake (a short-lived task), the open phase
//! (no task: the shard's poller, `poller.rs`, reads and writes it, `open.rs`) and the
//! closing phase (a short-lived task again, `Connection::finish`).
//!
//! Everything runs on the thread of the shard that owns the connection, next to the
//! shard's fan-out loop. An open connection holds no timers (the shard's sweep does
//! heartbeats), no read buffer while idle, and neither a tokio task nor a tokio
//! registration of its own.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use pushgate_hub::{CloseReason, ConnHandle, Shard};
use pushgate_protocol::command::Reply;
use pushgate_protocol::frame::encode_close;
use pushgate_protocol::{CloseCode, ConnId, PROTOCOL_VERSION};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::auth::Identity;
use crate::handshake::{self, Parsed, Refusal};
use crate::open::Next;
use crate::reader::{End, ReadState};
use crate::writer::flush;
use crate::EdgeShared;

/// The task that serves one accepted socket, on the owning shard's thread: the
/// handshake, then either hands a WebSocket connection to the shard's poller and
/// ends, or runs an SSE stream to its end.
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
        place: Place { handle, edge },
        read: ReadState::with_leftover(leftover),
        out: VecDeque::new(),
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
        place: Place { handle, edge },
        read: ReadState::with_leftover(up.leftover),
        out: VecDeque::new(),
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

/// A WebSocket connection outside the open phase: just upgraded (on its way to the
/// shard's poller) or closing. `open.rs` holds the same parts, with the socket
/// registered in the poller instead of tokio.
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) place: Place,
    pub(crate) read: ReadState,
    /// Frames taken from the shard queue and not yet fully written.
    pub(crate) out: VecDeque<Bytes>,
}

/// The connection's place in the node: its shard registration and its admission.
/// Dropping it gives both back, whichever phase the connection ends in.
pub(crate) struct Place {
    pub(crate) handle: ConnHandle,
    pub(crate) edge: Arc<EdgeShared>,
}

/// Capacity of the smallest queue allocation (`VecDeque<Bytes>`: 4 × 32 bytes); see
/// [`release_if_small`].
const SMALL_SPARE: usize = 4;

/// The task of one accepted socket: a hand-written future, whose boxed states exist
/// only while they run. An open WebSocket connection has no task (`poller.rs`).
pub(crate) enum ConnTask {
    Accepting(Pin<Box<dyn Future<Output = Option<Accepted>> + Send>>),
    /// A Server-Sent Events stream (`sse_stream.rs`), to its end.
    Sse(Pin<Box<dyn Future<Output = ()> + Send>>),
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
                        Some(Accepted::WebSocket(conn)) => {
                            let poller =
                                conn.place.edge.pollers[conn.place.handle.shard().id()].clone();
                            poller.adopt(conn);
                            ConnTask::Done
                        }
                        Some(Accepted::Sse(stream)) => ConnTask::Sse(stream),
                        None => ConnTask::Done,
                    };
                }
                ConnTask::Sse(fut) => {
                    ready!(fut.as_mut().poll(cx));
                    *this = ConnTask::Done;
                }
                ConnTask::Done => return Poll::Ready(()),
            }
        }
    }
}

impl Connection {
    /// The closing phase, after the open phase ended (run as a task of its own).
    pub(crate) async fn finish(self, next: Next) {
        match next {
            Next::End(end) => self.end(end).await,
            Next::Close(reason) => self.close(reason, None).await,
        }
    }

    /// Ends the connection after the read side stopped.
    async fn end(self, end: End) {
        match end {
            End::Lost => self.place.handle.set_reason(CloseReason::ConnectionLost),
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
        self.place.handle.set_reason(reason);
        let grace = self.place.edge.config.close_timeout;
        if reason.is_abortive() {
            self.out.clear();
        } else {
            // Replies the reader queued just before it stopped (to a command sent ahead
            // of a bad frame or of the client's close) still go out, before the close.
            let mut queued = VecDeque::new();
            std::future::poll_fn(|cx| {
                let _ = self.place.handle.poll_outgoing(cx, &mut queued, true);
                Poll::Ready(())
            })
            .await;
            self.out.append(&mut queued);
        }
        // An operator's disconnect may carry its own code and reason.
        let note = match (echo, reason) {
            (None, CloseReason::Disconnected) => self.place.handle.take_close_note(),
            _ => None,
        };
        match (&self.place.edge.surface, echo) {
            // The second protocol closes its own way (its codes, a last message).
            (Some(s), None) if self.place.handle.is_dialect() => {
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
                match flush(
                    &self.stream,
                    &mut self.out,
                    self.place.handle.shard().metrics(),
                ) {
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

impl Drop for Place {
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

/// Frees `out`'s allocation if it is empty and of the smallest size a queue allocates.
///
/// Called when a connection goes idle. The writer swaps its emptied queue with the
/// shard's, so each side keeps an allocation for the next burst. For a connection that
/// only ever gets a heartbeat ping, a reply or a trickle of publications, that is 128
/// bytes on each side for its whole idle life (measured: +240 B per idle connection
/// after two heartbeats). The shard's sweep frees its side; this frees the writer's.
/// A larger queue means a burst, likely to come back, and is kept (up to 64 frames; a
/// larger one is freed after each flush).
pub(crate) fn release_if_small(out: &mut VecDeque<Bytes>) {
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
