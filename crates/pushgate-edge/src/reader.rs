//! The read path: bytes from the socket to commands, on readiness.
//!
//! Reads land in one buffer per shard thread, not per connection; only the tail of
//! an incomplete frame is copied into the connection's own (usually absent) buffer.
//! An idle connection therefore holds no read buffer at all.
//!
//! The work one connection may make its shard do is bounded twice: per wake-up (at
//! most [`READ_BUDGET`] bytes are read, then the shard's poller serves its other
//! connections) and per second (every frame and every byte counts against the
//! connection's inbound limits, `inbound.rs`; beyond them, close 1008).

use std::cell::RefCell;
use std::io::Read;

use pushgate_hub::history::ReplyFn;
use pushgate_hub::{CloseReason, ConnHandle, RefreshError, SubscribeError, SubscribeRequest};
use pushgate_protocol::command::{Command, CommandError, Positions, Reply};
use pushgate_protocol::deflate::{inflate, InflateError};
use pushgate_protocol::frame::{encode_frame, OpCode, Step};
use pushgate_protocol::{FrameReader, Message};

use crate::inbound::{now_second, Flood, InboundMeter};
use crate::refresh::{refused, Job};
use crate::writer::retry_interrupted;
use crate::EdgeShared;

/// Size of each shard thread's read buffer.
const SCRATCH: usize = 64 * 1024;

/// Most bytes read from one connection in one turn of the shard's poller: at most ~2,700
/// frames (an empty pong is six bytes) parsed before the other connections run.
/// Measured beside an empty-pong flood on one shard (debug build, no inbound limits):
/// ping round trips of p50 2.7 ms with 64 KiB per wake-up, 0.9 ms with 16 KiB.
pub(crate) const READ_BUDGET: usize = 16 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
    /// Where compressed messages are inflated: one per shard thread, allocated at the
    /// first compressed message, at most `max_message_bytes` + 1.
    static INFLATED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Why reading stopped for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The client sent a close frame with this code (echoed back).
    ClientClose(Option<u16>),
    /// The socket reached EOF or failed.
    Lost,
    /// The client broke the protocol: close with this reason.
    Violation(CloseReason),
}

/// Per-connection read state: 24 bytes while idle.
#[derive(Default)]
pub(crate) struct ReadState {
    frames: FrameReader,
    /// Bytes of an incomplete frame; `None` almost always. Boxed, so that the idle
    /// connection pays 8 bytes for it rather than an empty `Vec`'s 24.
    #[allow(clippy::box_collection)] // deliberate: see above
    partial: Option<Box<Vec<u8>>>,
    /// Frames and bytes received in the current second.
    meter: InboundMeter,
}

impl ReadState {
    pub(crate) fn with_leftover(leftover: Vec<u8>) -> ReadState {
        ReadState {
            partial: (!leftover.is_empty()).then(|| Box::new(leftover)),
            ..ReadState::default()
        }
    }

    /// Processes bytes left over from the handshake, if any.
    pub(crate) fn process_partial(
        &mut self,
        handle: &ConnHandle,
        edge: &EdgeShared,
    ) -> Result<(), End> {
        let Some(mut buf) = self.partial.take() else {
            return Ok(());
        };
        let used = process(&mut self.frames, &mut self.meter, &mut buf, handle, edge)?;
        buf.drain(..used);
        self.keep(buf);
        Ok(())
    }

    /// Reads what the socket has, at most `budget` bytes (decreased by what was read),
    /// and handles every complete message. Returns `Ok(false)` when the socket has no
    /// more data for now (a read found it empty, or returned less than asked: the
    /// socket is edge-triggered, so data arriving later raises a new event), `Ok(true)`
    /// when the budget ran out first (there may be more to read).
    pub(crate) fn on_readable(
        &mut self,
        stream: &mio::net::TcpStream,
        handle: &ConnHandle,
        edge: &EdgeShared,
        budget: &mut usize,
    ) -> Result<bool, End> {
        SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            while *budget > 0 {
                let want = (*budget).min(scratch.len());
                let n = match retry_interrupted(|| (&*stream).read(&mut scratch[..want])) {
                    Ok(0) => return Err(End::Lost),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                    Err(_) => return Err(End::Lost),
                };
                *budget -= n;
                handle.touch();
                self.meter
                    .bytes(now_second(), n, edge.config.inbound)
                    .map_err(|f| flooded(f, edge))?;
                match self.partial.take() {
                    None => {
                        let used = process(
                            &mut self.frames,
                            &mut self.meter,
                            &mut scratch[..n],
                            handle,
                            edge,
                        )?;
                        if used < n {
                            self.keep(Box::new(scratch[used..n].to_vec()));
                        }
                    }
                    Some(mut buf) => {
                        buf.extend_from_slice(&scratch[..n]);
                        let used =
                            process(&mut self.frames, &mut self.meter, &mut buf, handle, edge)?;
                        buf.drain(..used);
                        self.keep(buf);
                    }
                }
                if n < want {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    /// Keeps the bytes of an incomplete frame, if there are any.
    #[allow(clippy::box_collection)] // the `partial` field's type
    fn keep(&mut self, buf: Box<Vec<u8>>) {
        if !buf.is_empty() {
            self.partial = Some(buf);
        }
    }
}

/// Counts a flood and ends the connection with 1008.
fn flooded(f: Flood, edge: &EdgeShared) -> End {
    match f {
        Flood::Frames => edge.limit_metrics.inbound_rate.increment(1),
        Flood::Bytes => edge.limit_metrics.inbound_bytes.increment(1),
    }
    End::Violation(CloseReason::InboundFlood)
}

/// Handles every complete frame at the front of `buf`; returns the bytes consumed.
/// Every frame counts against the inbound frame limit, the fragments of a message
/// and control frames included.
fn process(
    frames: &mut FrameReader,
    meter: &mut InboundMeter,
    buf: &mut [u8],
    handle: &ConnHandle,
    edge: &EdgeShared,
) -> Result<usize, End> {
    let deflate = handle.deflate();
    let max = edge.config.max_message;
    let mut at = 0;
    loop {
        let step = frames
            .next_deflate(&mut buf[at..], max, deflate)
            .map_err(|e| {
                End::Violation(match e.close_code() {
                    pushgate_protocol::CloseCode::INVALID_PAYLOAD => CloseReason::InvalidPayload,
                    pushgate_protocol::CloseCode::MESSAGE_TOO_BIG => CloseReason::MessageTooBig,
                    _ => CloseReason::ProtocolError,
                })
            })?;
        if !matches!(step, Step::NeedMore) {
            meter
                .frame(edge.config.inbound)
                .map_err(|f| flooded(f, edge))?;
        }
        match step {
            Step::NeedMore => return Ok(at),
            Step::Consumed(n) => at += n,
            Step::Message(n, msg) => {
                at += n;
                on_message(msg, handle, edge)?;
            }
        }
    }
}

fn on_message(msg: Message<'_>, handle: &ConnHandle, edge: &EdgeShared) -> Result<(), End> {
    match msg {
        Message::Text(text) if handle.is_dialect() => {
            if let Some(s) = &edge.surface {
                s.on_text(text, handle);
            }
        }
        Message::Text(text) => on_command(text, handle, edge),
        // The dialect (Pusher) has no binary messages: ignored, as by Pusher.
        Message::Binary(_) if handle.is_dialect() => {}
        Message::Binary(_) => reply_error(handle, &CommandError::Binary, None),
        Message::Ping(p) => handle.send(encode_frame(OpCode::Pong, p)),
        Message::Pong(_) => {}
        Message::Close(code, _) => return Err(End::ClientClose(code)),
        Message::Deflated { text, payload } => return on_deflated(text, payload, handle, edge),
    }
    Ok(())
}

/// A compressed message: inflated (at most `max_message` bytes: beyond, 1009) into this
/// thread's buffer, then handled like an uncompressed one.
fn on_deflated(
    text: bool,
    payload: &[u8],
    handle: &ConnHandle,
    edge: &EdgeShared,
) -> Result<(), End> {
    INFLATED.with(|buf| {
        let mut buf = buf.borrow_mut();
        inflate(payload, &mut buf, edge.config.max_message).map_err(|e| {
            End::Violation(match e {
                InflateError::TooBig(_) => CloseReason::MessageTooBig,
                InflateError::Corrupt => CloseReason::InvalidPayload,
            })
        })?;
        let msg = if text {
            let s = std::str::from_utf8(&buf)
                .map_err(|_| End::Violation(CloseReason::InvalidPayload))?;
            Message::Text(s)
        } else {
            Message::Binary(&buf)
        };
        on_message(msg, handle, edge)
    })
}

fn on_command(text: &str, handle: &ConnHandle, edge: &EdgeShared) {
    match Command::parse(text) {
        Ok(Command::Subscribe {
            channels,
            since,
            latest,
            presence_events,
            id,
        }) => {
            if let Some(ch) = edge.guarded(&channels) {
                if !handle.has_grant() {
                    let e = SubscribeError::NotAllowed(ch.to_owned());
                    let message = crate::surface::guarded_message(ch);
                    let reply = Reply::Error {
                        code: e.code(),
                        message,
                        id: id.as_ref(),
                    };
                    return handle.send(reply.to_frame());
                }
            }
            let reply = subscribe_reply(channels.clone(), id);
            let req = SubscribeRequest {
                channels,
                since,
                latest,
                presence_events,
            };
            if let Err(SubscribeError::TooMany(_)) = handle.subscribe_with(req, reply) {
                edge.limit_metrics.subscriptions.increment(1);
            }
        }
        Ok(Command::Unsubscribe { channels, id }) => {
            handle.unsubscribe(&channels);
            handle.send(
                Reply::Unsubscribed {
                    channels: &channels,
                    id: id.as_ref(),
                }
                .to_frame(),
            );
        }
        Ok(Command::Ping { id }) => handle.send(Reply::Pong { id: id.as_ref() }.to_frame()),
        Ok(Command::Refresh { token, id }) => on_refresh(&token, id.as_ref(), handle, edge),
        Ok(Command::Presence { channel, id }) => {
            crate::presence::on_presence(channel, id, handle, edge)
        }
        Err((e, id)) => reply_error(handle, &e, id.as_ref()),
    }
}

/// Builds the answer to a subscribe once the hub knows the outcome: `subscribed` with
/// positions, or an error, echoing the command's id.
fn subscribe_reply(channels: Vec<String>, id: Option<serde_json::Value>) -> ReplyFn {
    Box::new(move |outcome| match outcome {
        Ok(s) => Reply::Subscribed {
            channels: &channels,
            positions: Positions(&s.positions),
            recovered: &s.recovered,
            unrecovered: &s.unrecovered,
            id: id.as_ref(),
        }
        .to_frame(),
        Err(e) => Reply::Error {
            code: e.code(),
            message: e.to_string(),
            id: id.as_ref(),
        }
        .to_frame(),
    })
}

/// A fresh token for an open connection: same user, new channels and expiry. Checked
/// here only for whether the connection may refresh now; the token itself is verified
/// off the shard's thread (`refresh.rs`), which sends the reply.
fn on_refresh(token: &str, id: Option<&serde_json::Value>, handle: &ConnHandle, edge: &EdgeShared) {
    if let Err(e) = handle.begin_refresh() {
        if matches!(e, RefreshError::TooMany(_)) {
            edge.limit_metrics.refresh_rate.increment(1);
        }
        return handle.send(refused(e.to_string(), id));
    }
    let job = Job {
        token: token.to_owned(),
        conn: handle.id(),
        request: id.cloned(),
    };
    if edge.verifier.submit(job).is_err() {
        let shard = edge.hub.shard_for(handle.id());
        let _ = shard.end_refresh(handle.id(), None);
        handle.send(refused(
            "the gateway is busy verifying tokens; retry".into(),
            id,
        ));
    }
}

fn reply_error(handle: &ConnHandle, e: &CommandError, id: Option<&serde_json::Value>) {
    handle.send(
        Reply::Error {
            code: e.code(),
            message: e.to_string(),
            id,
        }
        .to_frame(),
    );
}
