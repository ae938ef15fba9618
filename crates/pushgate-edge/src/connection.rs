//! One client connection: handshake, then a single task that reads on readiness and
//! writes whatever the shard queued, until either side closes.
//!
//! The task runs on the thread of the shard that owns the connection, next to the
//! shard's fan-out loop. It holds no timers (the shard's sweep does heartbeats) and
//! no read buffer while idle.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use pushgate_hub::{CloseReason, ConnHandle, Outgoing, Shard};
use pushgate_protocol::command::Reply;
use pushgate_protocol::frame::encode_close;
use pushgate_protocol::{CloseCode, ConnId, PROTOCOL_VERSION};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::handshake::{self, Parsed, Refusal};
use crate::reader::{End, ReadState};
use crate::writer::flush;
use crate::EdgeShared;

/// Serves one accepted socket to the end. Runs on the owning shard's thread.
pub(crate) async fn serve(
    std: std::net::TcpStream,
    _peer: SocketAddr,
    id: ConnId,
    shard: Arc<Shard>,
    edge: Arc<EdgeShared>,
) {
    let Ok(mut stream) = TcpStream::from_std(std) else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let upgraded = timeout(edge.config.handshake_timeout, upgrade(&mut stream, &edge)).await;
    let (user, leftover) = match upgraded {
        Ok(Ok(v)) => v,
        Ok(Err(Some(refusal))) => {
            edge.count_refusal(refusal.status);
            handshake::write_refusal(&mut stream, &refusal).await;
            return;
        }
        Ok(Err(None)) => return, // the client went away mid-handshake
        Err(_) => {
            edge.count_refusal(408);
            return; // too slow to send its headers
        }
    };
    let handle = shard.register(id, user.as_deref());
    let conn_str = id.display(&edge.hub.config().node_id).to_string();
    handle.send(
        Reply::Connected {
            v: PROTOCOL_VERSION,
            conn: &conn_str,
            user: user.as_deref(),
            heartbeat_ms: edge.hub.config().heartbeat_interval.as_millis() as u64,
        }
        .to_frame(),
    );
    drop(conn_str);
    Connection {
        stream,
        handle,
        read: ReadState::with_leftover(leftover),
        out: VecDeque::new(),
        edge,
    }
    .run()
    .await;
}

/// Reads and checks the upgrade request, authenticates, answers 101.
/// Returns the user and any bytes received after the request head.
async fn upgrade(
    stream: &mut TcpStream,
    edge: &EdgeShared,
) -> Result<(Option<String>, Vec<u8>), Option<Refusal>> {
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
        match handshake::parse(&buf, &edge.config.ws_path).map_err(Some)? {
            Parsed::Partial => continue,
            Parsed::Complete(req, key, n) => {
                let identity = edge.auth.authenticate(&req).map_err(Some)?;
                handshake::write_switching(stream, &key, &req)
                    .await
                    .map_err(|_| None)?;
                buf.drain(..n);
                let leftover = if buf.is_empty() { Vec::new() } else { buf };
                return Ok((identity.user, leftover));
            }
        }
    }
}

struct Connection {
    stream: TcpStream,
    handle: ConnHandle,
    read: ReadState,
    /// Frames taken from the shard queue and not yet fully written.
    out: VecDeque<Bytes>,
    edge: Arc<EdgeShared>,
}

enum Event {
    Readable,
    Writable,
    Outgoing(Outgoing),
    Failed,
}

impl Connection {
    async fn run(mut self) {
        let max = self.edge.config.max_message;
        if let Err(end) = self.read.process_partial(&self.handle, max) {
            return self.end(end).await;
        }
        loop {
            let flushing = !self.out.is_empty();
            let event = tokio::select! {
                biased;
                r = self.stream.readable() => if r.is_ok() { Event::Readable } else { Event::Failed },
                r = self.stream.writable(), if flushing => if r.is_ok() { Event::Writable } else { Event::Failed },
                o = poll_fn(|cx| self.handle.poll_outgoing(cx, &mut self.out, !flushing)) => Event::Outgoing(o),
            };
            match event {
                Event::Readable => {
                    if let Err(end) = self.read.on_readable(&self.stream, &self.handle, max) {
                        return self.end(end).await;
                    }
                }
                Event::Writable | Event::Outgoing(Outgoing::Frames) => {
                    if flush(&self.stream, &mut self.out, self.handle.shard().metrics()).is_err() {
                        return self.end(End::Lost).await;
                    }
                    if self.out.is_empty() && self.out.capacity() > 64 {
                        self.out = VecDeque::new(); // a big burst is over: give the memory back
                    }
                }
                Event::Outgoing(Outgoing::Close(reason)) => return self.close(reason, None).await,
                Event::Failed => return self.end(End::Lost).await,
            }
        }
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
        }
        let code = echo.unwrap_or(reason.code());
        self.out.push_back(encode_close(code, reason.label()));
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
        if flushed != Ok(true) || echo.is_some() {
            // Either the client cannot take the close frame or it closed first:
            // nothing more to wait for.
            return;
        }
        // Wait for the client's close frame (or EOF) so our close frame is not lost to a
        // reset caused by unread data.
        let _ = timeout(grace, linger(&self.stream)).await;
    }
}

/// Reads until the client's close frame or EOF, ignoring everything else.
async fn linger(stream: &TcpStream) {
    let mut frames = pushgate_protocol::FrameReader::new();
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read(&mut buf[len..]) {
            Ok(0) => return,
            Ok(n) => len += n,
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
