//! The read path: bytes from the socket to commands, on readiness.
//!
//! Reads land in one buffer per shard thread, not per connection; only the tail of
//! an incomplete frame is copied into the connection's own (usually empty) buffer.
//! An idle connection therefore holds no read buffer at all.

use std::cell::RefCell;

use pushgate_hub::history::ReplyFn;
use pushgate_hub::{CloseReason, ConnHandle, SubscribeError, SubscribeRequest};
use pushgate_protocol::command::{Command, CommandError, Positions, Reply};
use pushgate_protocol::frame::{encode_frame, OpCode, Step};
use pushgate_protocol::{FrameReader, Message};

use crate::EdgeShared;

/// Size of each shard thread's read buffer.
const SCRATCH: usize = 64 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH]);
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

/// Per-connection read state.
#[derive(Default)]
pub(crate) struct ReadState {
    frames: FrameReader,
    /// Bytes of an incomplete frame; empty (unallocated) almost always.
    partial: Vec<u8>,
}

impl ReadState {
    pub(crate) fn with_leftover(leftover: Vec<u8>) -> ReadState {
        ReadState {
            frames: FrameReader::new(),
            partial: leftover,
        }
    }

    /// Processes bytes left over from the handshake, if any.
    pub(crate) fn process_partial(
        &mut self,
        handle: &ConnHandle,
        edge: &EdgeShared,
    ) -> Result<(), End> {
        if self.partial.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.partial);
        let used = process(&mut self.frames, &mut buf, handle, edge)?;
        buf.drain(..used);
        self.partial = buf;
        Ok(())
    }

    /// Reads what the socket has and handles every complete message.
    /// Returns `Ok(())` when the socket has no more data for now.
    pub(crate) fn on_readable(
        &mut self,
        stream: &tokio::net::TcpStream,
        handle: &ConnHandle,
        edge: &EdgeShared,
    ) -> Result<(), End> {
        SCRATCH_BUF.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            // A few reads per wake-up, then let other connections of the shard run.
            for _ in 0..8 {
                let n = match stream.try_read(&mut scratch[..]) {
                    Ok(0) => return Err(End::Lost),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                    Err(_) => return Err(End::Lost),
                };
                handle.touch();
                if self.partial.is_empty() {
                    let used = process(&mut self.frames, &mut scratch[..n], handle, edge)?;
                    if used < n {
                        self.partial.extend_from_slice(&scratch[used..n]);
                    }
                } else {
                    self.partial.extend_from_slice(&scratch[..n]);
                    let mut buf = std::mem::take(&mut self.partial);
                    let used = process(&mut self.frames, &mut buf, handle, edge)?;
                    buf.drain(..used);
                    if buf.is_empty() {
                        buf = Vec::new(); // give the allocation back while idle
                    }
                    self.partial = buf;
                }
                if n < scratch.len() {
                    return Ok(());
                }
            }
            Ok(())
        })
    }
}

/// Handles every complete frame at the front of `buf`; returns the bytes consumed.
fn process(
    frames: &mut FrameReader,
    buf: &mut [u8],
    handle: &ConnHandle,
    edge: &EdgeShared,
) -> Result<usize, End> {
    let max = edge.config.max_message;
    let mut at = 0;
    loop {
        let step = frames.next(&mut buf[at..], max).map_err(|e| {
            End::Violation(match e.close_code() {
                pushgate_protocol::CloseCode::INVALID_PAYLOAD => CloseReason::InvalidPayload,
                pushgate_protocol::CloseCode::MESSAGE_TOO_BIG => CloseReason::MessageTooBig,
                _ => CloseReason::ProtocolError,
            })
        })?;
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
    // Every message that costs the gateway work counts against the inbound rate;
    // pongs (answers to our pings) and the close frame do not.
    if matches!(
        msg,
        Message::Text(_) | Message::Binary(_) | Message::Ping(_)
    ) && !handle.count_inbound()
    {
        edge.limit_metrics.inbound_rate.increment(1);
        return Err(End::Violation(CloseReason::InboundFlood));
    }
    match msg {
        Message::Text(text) => on_command(text, handle, edge),
        Message::Binary(_) => reply_error(handle, &CommandError::Binary, None),
        Message::Ping(p) => handle.send(encode_frame(OpCode::Pong, p)),
        Message::Pong(_) => {}
        Message::Close(code, _) => return Err(End::ClientClose(code)),
    }
    Ok(())
}

fn on_command(text: &str, handle: &ConnHandle, edge: &EdgeShared) {
    match Command::parse(text) {
        Ok(Command::Subscribe {
            channels,
            since,
            latest,
            id,
        }) => {
            let reply = subscribe_reply(channels.clone(), id);
            let req = SubscribeRequest {
                channels,
                since,
                latest,
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

/// A fresh token for an open connection: same user, new channels and expiry.
fn on_refresh(token: &str, id: Option<&serde_json::Value>, handle: &ConnHandle, edge: &EdgeShared) {
    let refreshed = edge.auth.refresh(token).and_then(|identity| {
        let (Some(user), Some(grant)) = (identity.user, identity.grant) else {
            return Err("the token carries no user".to_string());
        };
        let exp = grant.expires;
        handle
            .refresh(&user, grant)
            .map(|revoked| (exp, revoked))
            .map_err(|e| e.to_string())
    });
    let frame = match refreshed {
        Ok((exp, revoked)) => Reply::Refreshed {
            exp,
            unsubscribed: &revoked,
            id,
        }
        .to_frame(),
        Err(message) => Reply::Error {
            code: "refresh_failed",
            message,
            id,
        }
        .to_frame(),
    };
    handle.send(frame);
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
