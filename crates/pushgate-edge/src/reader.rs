//! The read path: bytes from the socket to commands, on readiness.
//!
//! Reads land in one buffer per shard thread, not per connection; only the tail of
//! an incomplete frame is copied into the connection's own (usually empty) buffer.
//! An idle connection therefore holds no read buffer at all.

use std::cell::RefCell;

use pushgate_hub::{CloseReason, ConnHandle};
use pushgate_protocol::command::{Command, CommandError, Reply};
use pushgate_protocol::frame::{encode_frame, OpCode, Step};
use pushgate_protocol::{FrameReader, Message};

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
    pub(crate) fn process_partial(&mut self, handle: &ConnHandle, max: usize) -> Result<(), End> {
        if self.partial.is_empty() {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.partial);
        let used = process(&mut self.frames, &mut buf, handle, max)?;
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
        max: usize,
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
                    let used = process(&mut self.frames, &mut scratch[..n], handle, max)?;
                    if used < n {
                        self.partial.extend_from_slice(&scratch[used..n]);
                    }
                } else {
                    self.partial.extend_from_slice(&scratch[..n]);
                    let mut buf = std::mem::take(&mut self.partial);
                    let used = process(&mut self.frames, &mut buf, handle, max)?;
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
    max: usize,
) -> Result<usize, End> {
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
                on_message(msg, handle)?;
            }
        }
    }
}

fn on_message(msg: Message<'_>, handle: &ConnHandle) -> Result<(), End> {
    match msg {
        Message::Text(text) => on_command(text, handle),
        Message::Binary(_) => reply_error(handle, &CommandError::Binary, None),
        Message::Ping(p) => handle.send(encode_frame(OpCode::Pong, p)),
        Message::Pong(_) => {}
        Message::Close(code, _) => return Err(End::ClientClose(code)),
    }
    Ok(())
}

fn on_command(text: &str, handle: &ConnHandle) {
    match Command::parse(text) {
        Ok(Command::Subscribe { channels, id }) => match handle.subscribe(&channels) {
            Ok(()) => handle.send(
                Reply::Subscribed {
                    channels: &channels,
                    id: id.as_ref(),
                }
                .to_frame(),
            ),
            Err(e) => handle.send(
                Reply::Error {
                    code: "subscription_limit",
                    message: e.to_string(),
                    id: id.as_ref(),
                }
                .to_frame(),
            ),
        },
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
        Err((e, id)) => reply_error(handle, &e, id.as_ref()),
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
