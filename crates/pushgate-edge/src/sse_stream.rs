//! One Server-Sent Events stream, from its request to its end, on the thread of the
//! shard that owns it (a task of its own, while a WebSocket connection is served by the
//! shard's poller, `poller.rs`).
//!
//! Same rules as WebSocket: origin, authentication, connection limits, the shard's
//! bounded queue and slow-consumer policy, heartbeats from the shard's sweep (written
//! as `:\n\n` comments). A client of an event stream sends nothing after its request,
//! so "heard from" means "took what was written": the stream is touched each time its
//! writer empties, and one whose socket stays full for `heartbeat_timeout_ms` is
//! reaped. A close from the shard (drain, slow consumer, disconnect) ends the stream
//! with a `#close` event and a FIN.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use pushgate_hub::history::ReplyFn;
use pushgate_hub::{CloseReason, ConnHandle, Outgoing, Shard, SubscribeError, Subscribed};
use pushgate_protocol::command::{Positions, Reply};
use pushgate_protocol::sse::{self, Cursor};
use pushgate_protocol::{ConnId, PROTOCOL_VERSION};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::handshake::{self, Refusal, UpgradeRequest};
use crate::sse::{self as request, SseHead, Wanted};
use crate::sse_writer::SseWriter;
use crate::writer::flush;
use crate::EdgeShared;

/// Most bytes a client may send after its request before the stream is closed (an
/// event-stream client sends none; this only bounds what is read and thrown away).
const MAX_STRAY: usize = 16 * 1024;

/// Serves one request for the SSE path to its end.
pub(crate) async fn serve(
    stream: TcpStream,
    id: ConnId,
    shard: Arc<Shard>,
    edge: Arc<EdgeShared>,
    head: SseHead,
) {
    // The request's checks run in a boxed future of their own: their strings and
    // buffers are gone before the stream's long, mostly idle life, which keeps only
    // [`Open`] (the idle memory per stream depends on it).
    let Some(mut open) = Box::pin(start(stream, id, shard, edge, head)).await else {
        return;
    };
    match std::future::poll_fn(|cx| open.poll(cx)).await {
        End::Client(reason) => open.handle.set_reason(reason),
        // Boxed too: the closing phase's timer would otherwise size every idle stream.
        End::Close(reason) => Box::pin(open.close(reason)).await,
    }
}

/// Checks the request, registers and subscribes the stream, and answers with the
/// stream's head and `#connected`. `None` if it was refused or the client went away.
async fn start(
    mut stream: TcpStream,
    id: ConnId,
    shard: Arc<Shard>,
    edge: Arc<EdgeShared>,
    head: SseHead,
) -> Option<Open> {
    let req = match head {
        SseHead::Preflight(req) => {
            if edge.origin_allowed(&req) {
                request::write_preflight(&mut stream, &req).await;
            } else {
                refuse(&mut stream, &edge, Refusal::new(403, "origin not allowed")).await;
            }
            return None;
        }
        SseHead::Open(req) => req,
    };
    let (identity, wanted) = match admit(&req, &edge) {
        Ok(v) => v,
        Err(r) => {
            refuse(&mut stream, &edge, r).await;
            return None;
        }
    };
    let user = identity.user.as_deref();
    if let Err(r) = edge.admission.admit(user, &edge.limit_metrics) {
        refuse(&mut stream, &edge, r).await;
        return None;
    }
    // Register and subscribe before answering, so that every publication after the
    // client saw its head (and, on a history channel, after its position) reaches it.
    // From here on, dropping `open` gives the admission back.
    let handle = shard.register_sse(id, user, identity.grant.clone());
    let mut open = Open {
        stream,
        handle,
        edge: edge.clone(),
        writer: SseWriter::default(),
        taken: VecDeque::new(),
        out: VecDeque::new(),
        stray: 0,
    };
    let channels = wanted.subscribe.channels.clone();
    if !channels.is_empty() {
        let reply = subscribed_reply(channels);
        if let Err(e) = open.handle.subscribe_with(wanted.subscribe, reply) {
            refuse(&mut open.stream, &edge, refusal_of(&e)).await;
            return None;
        }
    }
    let conn = id.display(&edge.hub.config().node_id).to_string();
    let connected = Reply::Connected {
        v: PROTOCOL_VERSION,
        conn: &conn,
        user,
        heartbeat_ms: edge.hub.config().heartbeat_interval.as_millis() as u64,
        channels: &[],
    };
    let json = serde_json::to_string(&connected).expect("replies always serialize");
    let first = sse::encode_event(None, Some(sse::CONNECTED), &json);
    request::write_head(&mut open.stream, &req, &first)
        .await
        .ok()?;
    Some(open)
}

/// Checks origin and identity and reads what the stream asks for.
fn admit(req: &UpgradeRequest, edge: &EdgeShared) -> Result<(crate::Identity, Wanted), Refusal> {
    if !edge.origin_allowed(req) {
        return Err(Refusal::new(403, "origin not allowed"));
    }
    let identity = edge.auth.authenticate(req)?;
    let max = edge.hub.config().max_subscriptions_per_conn;
    let wanted = Wanted::from_request(req, &identity.subscribe, identity.grant.as_ref(), max)?;
    if identity.grant.is_none() {
        if let Some(ch) = edge.guarded(&wanted.subscribe.channels) {
            return Err(Refusal::new(403, crate::surface::guarded_message(ch)));
        }
    }
    Ok((identity, wanted))
}

async fn refuse(stream: &mut TcpStream, edge: &EdgeShared, r: Refusal) {
    edge.count_refusal(r.status);
    handshake::write_refusal(stream, &r).await;
}

fn refusal_of(e: &SubscribeError) -> Refusal {
    match e {
        SubscribeError::NotAllowed(_) => Refusal::new(403, e.to_string()),
        SubscribeError::TooMany(_) => Refusal::new(400, e.to_string()),
    }
}

/// The `#subscribed` event (its id names every history channel's position, which
/// seeds the stream's cursor), then an `#unrecoverable` event per channel whose
/// position could not be resumed. Built under the shard's lock when the outcome is
/// known; it reaches the client before any publication of those channels.
fn subscribed_reply(channels: Vec<String>) -> ReplyFn {
    Box::new(move |outcome: Result<&Subscribed, &SubscribeError>| {
        let Ok(s) = outcome else {
            // Refused before registration could matter: the request is answered 4xx.
            return Bytes::new();
        };
        let json = serde_json::to_string(&Reply::Subscribed {
            channels: &channels,
            positions: Positions(&s.positions),
            recovered: &s.recovered,
            unrecovered: &s.unrecovered,
            id: None,
        })
        .expect("replies always serialize");
        let cursor = Cursor(s.positions.clone()).to_string();
        let id = (!cursor.is_empty()).then_some(cursor.as_str());
        let mut out = sse::encode_event(id, Some(sse::SUBSCRIBED), &json).to_vec();
        for ch in &s.unrecovered {
            if let Some((_, p)) = s.positions.iter().find(|(c, _)| c == ch) {
                let data = serde_json::json!({"channel": ch, "epoch": p.epoch, "offset": p.offset});
                let entry = sse::id_entry(ch, &p.epoch, p.offset);
                let event =
                    sse::encode_event(Some(&entry), Some(sse::UNRECOVERABLE), &data.to_string());
                out.extend_from_slice(&event);
            }
        }
        Bytes::from(out)
    })
}

/// How an open stream ended.
enum End {
    /// The client went away (EOF, reset) or sent what an event-stream client never does.
    Client(CloseReason),
    /// The shard asked for a close.
    Close(CloseReason),
}

struct Open {
    stream: TcpStream,
    handle: ConnHandle,
    edge: Arc<EdgeShared>,
    writer: SseWriter,
    /// Frames taken from the shard's queue, before conversion.
    taken: VecDeque<Bytes>,
    /// Bytes to write.
    out: VecDeque<Bytes>,
    /// Bytes the client sent after its request (thrown away).
    stray: usize,
}

impl Open {
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> Poll<End> {
        loop {
            if let Poll::Ready(r) = self.stream.poll_read_ready(cx) {
                if r.is_err() {
                    return Poll::Ready(End::Client(CloseReason::ConnectionLost));
                }
                let mut buf = [0u8; 512];
                match self.stream.try_read(&mut buf) {
                    Ok(0) => return Poll::Ready(End::Client(CloseReason::ClientClosed)),
                    Ok(n) => {
                        self.stray += n;
                        if self.stray > MAX_STRAY {
                            return Poll::Ready(End::Client(CloseReason::ProtocolError));
                        }
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return Poll::Ready(End::Client(CloseReason::ConnectionLost)),
                }
            }
            let flushing = !self.out.is_empty();
            if flushing {
                match self.stream.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => {
                        return Poll::Ready(End::Client(CloseReason::ConnectionLost))
                    }
                    Poll::Pending => {
                        // Still learn of a close (abortive ones do not wait for the flush).
                        if let Poll::Ready(Outgoing::Close(r)) =
                            self.handle.poll_outgoing(cx, &mut self.taken, false)
                        {
                            return Poll::Ready(End::Close(r));
                        }
                        return Poll::Pending;
                    }
                }
            } else {
                match self.handle.poll_outgoing(cx, &mut self.taken, true) {
                    Poll::Ready(Outgoing::Frames) => {
                        for frame in self.taken.drain(..) {
                            self.writer.convert(frame, &mut self.out);
                        }
                    }
                    Poll::Ready(Outgoing::Close(r)) => return Poll::Ready(End::Close(r)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            match flush(&self.stream, &mut self.out, self.handle.shard().metrics()) {
                // The client took everything: it is alive (see the module doc).
                Ok(true) => self.handle.touch(),
                Ok(false) => {}
                Err(_) => return Poll::Ready(End::Client(CloseReason::ConnectionLost)),
            }
        }
    }

    /// Flushes what is queued (unless the close is abortive), then a `#close` event
    /// with the reason's WebSocket close code, and ends the response with a FIN.
    async fn close(mut self, reason: CloseReason) {
        self.handle.set_reason(reason);
        if reason.is_abortive() {
            self.out.clear();
        } else {
            std::future::poll_fn(|cx| {
                let _ = self.handle.poll_outgoing(cx, &mut self.taken, true);
                Poll::Ready(())
            })
            .await;
            for frame in std::mem::take(&mut self.taken) {
                self.writer.convert(frame, &mut self.out);
            }
        }
        let (code, text) = match (reason, self.handle.take_close_note()) {
            (CloseReason::Disconnected, Some((code, text))) => (code, text.into_string()),
            _ => (reason.code().0, reason.label().to_owned()),
        };
        let data = serde_json::json!({"code": code, "reason": text}).to_string();
        self.out
            .push_back(sse::encode_event(None, Some(sse::CLOSE), &data));
        let metrics = self.handle.shard().metrics().clone();
        let _ = timeout(self.edge.config.close_timeout, async {
            loop {
                match flush(&self.stream, &mut self.out, &metrics) {
                    Ok(true) => return,
                    Ok(false) => {
                        if self.stream.writable().await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        })
        .await;
        let _ = self.stream.shutdown().await;
    }
}

impl Drop for Open {
    /// Gives back the stream's place in the node and user counts.
    fn drop(&mut self) {
        let admission = &self.edge.admission;
        if admission.counts_users() {
            admission.release(self.handle.user().as_deref());
        } else {
            admission.release(None);
        }
    }
}
