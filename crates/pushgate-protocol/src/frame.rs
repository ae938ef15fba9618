//! RFC 6455 framing: encoding server frames and reading client frames.
//!
//! Server frames are never masked, so a publication is encoded once and the same
//! bytes are written to every recipient. Client frames are always masked; the reader
//! unmasks them in place, checks every size before it reserves memory, and
//! reassembles fragmented messages.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::close::CloseCode;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    fn from_u8(b: u8) -> Option<OpCode> {
        Some(match b {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// Length of the header of an unmasked frame carrying `len` payload bytes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// Writes the header of an unmasked, final frame.
pub fn put_header(buf: &mut impl BufMut, opcode: OpCode, len: usize) {
    buf.put_u8(0x80 | opcode as u8);
    match len {
        0..=125 => buf.put_u8(len as u8),
        126..=65535 => {
            buf.put_u8(126);
            buf.put_u16(len as u16);
        }
        _ => {
            buf.put_u8(127);
            buf.put_u64(len as u64);
        }
    }
}

/// Encodes one complete, unmasked, final frame.
pub fn encode_frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(header_len(payload.len()) + payload.len());
    put_header(&mut buf, opcode, payload.len());
    buf.put_slice(payload);
    buf.freeze()
}

/// Encodes a close frame with a code and a reason (truncated to fit 125 bytes).
pub fn encode_close(code: CloseCode, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.0.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode_frame(OpCode::Close, &payload)
}

/// A client broke the protocol; each variant maps to the close code sent back.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("reserved bits set")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    UnknownOpCode(u8),
    #[error("client frame is not masked")]
    Unmasked,
    #[error("control frame is fragmented or longer than 125 bytes")]
    BadControlFrame,
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    #[error("new data frame while a fragmented message is incomplete")]
    ExpectedContinuation,
    #[error("close frame with a one-byte payload or an invalid code")]
    BadClose,
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    #[error("message larger than {0} bytes")]
    TooBig(usize),
}

impl ProtocolError {
    /// The close code that answers this error.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            ProtocolError::TooBig(_) => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// One complete message from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// A close frame: the code (if any) and the reason.
    Close(Option<u16>, &'a str),
    /// A compressed data message (RSV1, permessage-deflate), still compressed: text
    /// (checked for UTF-8 only once inflated) or binary. Only from
    /// [`FrameReader::next_deflate`] with the extension on.
    Deflated {
        text: bool,
        payload: &'a [u8],
    },
}

/// What one call to [`FrameReader::next`] found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// The buffer does not hold a whole frame yet.
    NeedMore,
    /// `n` bytes were consumed: a fragment was stored, no message is complete yet.
    Consumed(usize),
    /// `n` bytes were consumed and completed a message.
    Message(usize, Message<'a>),
}

/// Reads client frames. Holds only the state of a fragmented message in flight,
/// so an idle connection's reader costs a few bytes.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// Opcode, whether it is compressed, and data of a fragmented message being
    /// reassembled; `None` almost always.
    fragments: Option<Box<(OpCode, bool, Vec<u8>)>>,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the frame at the front of `buf`, unmasking it in place once it is complete.
    ///
    /// `max_message` bounds a single frame and a reassembled message; it is checked
    /// from the header, before anything is buffered.
    pub fn next<'a>(
        &'a mut self,
        buf: &'a mut [u8],
        max_message: usize,
    ) -> Result<Step<'a>, ProtocolError> {
        self.next_deflate(buf, max_message, false)
    }

    /// [`next`](Self::next) on a connection that negotiated permessage-deflate when
    /// `deflate` is true: RSV1 on the first frame of a data message marks it compressed
    /// ([`Message::Deflated`]); RSV1 anywhere else is still a protocol error. A
    /// compressed message may be slightly larger than `max_message` on the wire (deflate
    /// of incompressible data grows it by a few bytes per 16 KiB); its inflated size is
    /// the caller's to bound.
    pub fn next_deflate<'a>(
        &'a mut self,
        buf: &'a mut [u8],
        max_message: usize,
        deflate: bool,
    ) -> Result<Step<'a>, ProtocolError> {
        self.reset_held();
        if buf.len() < 2 {
            return Ok(Step::NeedMore);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let rsv1 = b0 & crate::deflate::RSV1 != 0;
        if b0 & 0x30 != 0 || (rsv1 && !deflate) {
            return Err(ProtocolError::ReservedBits);
        }
        let fin = b0 & 0x80 != 0;
        let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::UnknownOpCode(b0 & 0x0F))?;
        // RFC 7692 §6.1: RSV1 only on the first frame of a (compressed) data message.
        if rsv1 && !matches!(opcode, OpCode::Text | OpCode::Binary) {
            return Err(ProtocolError::ReservedBits);
        }
        let compressed = rsv1 || self.fragments.as_ref().is_some_and(|f| f.1);
        let max_message = if compressed {
            max_message + max_message / 1024 + 64
        } else {
            max_message
        };
        if b1 & 0x80 == 0 {
            return Err(ProtocolError::Unmasked);
        }
        let (len, mut at) = match b1 & 0x7F {
            126 => {
                if buf.len() < 4 {
                    return Ok(Step::NeedMore);
                }
                (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(Step::NeedMore);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (n as u64, 2),
        };
        if opcode.is_control() && (!fin || len > 125) {
            return Err(ProtocolError::BadControlFrame);
        }
        let buffered = self.fragments.as_ref().map_or(0, |f| f.2.len() as u64);
        if len.saturating_add(buffered) > max_message as u64 {
            return Err(ProtocolError::TooBig(max_message));
        }
        let len = len as usize;
        if buf.len() < at + 4 + len {
            return Ok(Step::NeedMore);
        }
        let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        let total = at + len;
        unmask(&mut buf[at..total], mask);
        let range = at..total;

        match opcode {
            OpCode::Ping => Ok(Step::Message(total, Message::Ping(&buf[range]))),
            OpCode::Pong => Ok(Step::Message(total, Message::Pong(&buf[range]))),
            OpCode::Close => Ok(Step::Message(total, parse_close(&buf[range])?)),
            OpCode::Text | OpCode::Binary => {
                if self.fragments.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                if fin && rsv1 {
                    let text = opcode == OpCode::Text;
                    let payload = &buf[range];
                    return Ok(Step::Message(total, Message::Deflated { text, payload }));
                }
                if fin {
                    return Ok(Step::Message(total, data_message(opcode, &buf[range])?));
                }
                self.fragments = Some(Box::new((opcode, rsv1, buf[range].to_vec())));
                Ok(Step::Consumed(total))
            }
            OpCode::Continuation => {
                let Some(frag) = self.fragments.as_mut() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                frag.2.extend_from_slice(&buf[range]);
                if !fin {
                    return Ok(Step::Consumed(total));
                }
                let (op, deflated, data) = *self.fragments.take().expect("checked above");
                // The message must be returned by reference like every other one: copy it
                // over the consumed bytes when it fits, else keep it until the next call.
                let payload = if data.len() <= total {
                    buf[..data.len()].copy_from_slice(&data);
                    &buf[..data.len()]
                } else {
                    self.hold(data)
                };
                if deflated {
                    let text = op == OpCode::Text;
                    return Ok(Step::Message(total, Message::Deflated { text, payload }));
                }
                Ok(Step::Message(total, data_message(op, payload)?))
            }
        }
    }

    /// Keeps a reassembled message alive until the next call, so that it can be
    /// returned by reference like every other message.
    fn hold(&mut self, data: Vec<u8>) -> &[u8] {
        self.fragments = Some(Box::new((OpCode::Continuation, false, data)));
        &self.fragments.as_ref().expect("just set").2
    }

    /// Drops a reassembled message kept by [`hold`](Self::hold) for the previous call.
    fn reset_held(&mut self) {
        if matches!(
            self.fragments.as_deref(),
            Some((OpCode::Continuation, _, _))
        ) {
            self.fragments = None;
        }
    }
}

fn data_message(op: OpCode, payload: &[u8]) -> Result<Message<'_>, ProtocolError> {
    Ok(match op {
        OpCode::Text => {
            Message::Text(std::str::from_utf8(payload).map_err(|_| ProtocolError::InvalidUtf8)?)
        }
        _ => Message::Binary(payload),
    })
}

fn parse_close(payload: &[u8]) -> Result<Message<'_>, ProtocolError> {
    match payload.len() {
        0 => Ok(Message::Close(None, "")),
        1 => Err(ProtocolError::BadClose),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !CloseCode::is_valid_from_peer(code) {
                return Err(ProtocolError::BadClose);
            }
            let reason =
                std::str::from_utf8(&payload[2..]).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Message::Close(Some(code), reason))
        }
    }
}

/// XORs `payload` with the 4-byte mask, eight bytes at a time.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask) as u64;
    let m8 = (m << 32 | m).to_ne_bytes();
    let m64 = u64::from_ne_bytes(m8);
    let mut chunks = payload.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(c.try_into().expect("8 bytes")) ^ m64;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_test_support::client_frame;

    #[test]
    fn encodes_each_length_class() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let f = encode_frame(OpCode::Binary, &vec![7; len]);
            assert_eq!(f.len(), header_len(len) + len);
            assert_eq!(f[0], 0x82);
        }
    }

    #[test]
    fn reads_a_masked_text_frame() {
        let mut f = client_frame(true, 1, b"hello world, longer than eight");
        let mut r = FrameReader::new();
        let n = f.len();
        assert_eq!(
            r.next(&mut f, 1024).unwrap(),
            Step::Message(n, Message::Text("hello world, longer than eight"))
        );
    }

    #[test]
    fn needs_more_until_complete_and_does_not_unmask_early() {
        let full = client_frame(true, 2, &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let mut r = FrameReader::new();
        for cut in 0..full.len() {
            let mut part = full[..cut].to_vec();
            assert_eq!(r.next(&mut part, 1024).unwrap(), Step::NeedMore);
        }
    }

    #[test]
    fn reassembles_fragments_with_interleaved_ping() {
        let mut buf = client_frame(false, 1, b"hel");
        buf.extend(client_frame(true, 9, b"p"));
        buf.extend(client_frame(false, 0, b"lo "));
        buf.extend(client_frame(true, 0, b"world"));
        let mut r = FrameReader::new();
        let mut at = 0;
        let mut got = vec![];
        loop {
            match r.next(&mut buf[at..], 1024).unwrap() {
                Step::NeedMore => break,
                Step::Consumed(n) => at += n,
                Step::Message(n, m) => {
                    got.push(format!("{m:?}"));
                    at += n;
                }
            }
        }
        assert_eq!(got, vec!["Ping([112])", "Text(\"hello world\")"]);
    }

    #[test]
    fn refuses_protocol_violations() {
        let mut r = FrameReader::new();
        let mut unmasked = vec![0x81, 0x01, b'a'];
        assert_eq!(r.next(&mut unmasked, 10), Err(ProtocolError::Unmasked));
        let mut rsv = client_frame(true, 1, b"a");
        rsv[0] |= 0x40;
        assert_eq!(r.next(&mut rsv, 10), Err(ProtocolError::ReservedBits));
        let mut op = client_frame(true, 3, b"a");
        assert_eq!(r.next(&mut op, 10), Err(ProtocolError::UnknownOpCode(3)));
        let mut long_ping = client_frame(true, 9, &[0; 126]);
        assert_eq!(
            r.next(&mut long_ping, 1000),
            Err(ProtocolError::BadControlFrame)
        );
        let mut cont = client_frame(true, 0, b"a");
        assert_eq!(
            r.next(&mut cont, 10),
            Err(ProtocolError::UnexpectedContinuation)
        );
        let mut bad_utf8 = client_frame(true, 1, &[0xff, 0xfe]);
        assert_eq!(r.next(&mut bad_utf8, 10), Err(ProtocolError::InvalidUtf8));
        let mut bad_code = client_frame(true, 8, &1005u16.to_be_bytes());
        assert_eq!(r.next(&mut bad_code, 10), Err(ProtocolError::BadClose));
    }

    #[test]
    fn checks_size_from_the_header_before_buffering() {
        let mut r = FrameReader::new();
        // Only the header of a 1 MiB frame: refused without waiting for the payload.
        let mut hdr = client_frame(true, 2, &vec![0; 1 << 20])[..14].to_vec();
        assert_eq!(r.next(&mut hdr, 65536), Err(ProtocolError::TooBig(65536)));
        // Fragments whose sum exceeds the limit.
        let mut a = client_frame(false, 2, &[0; 60]);
        assert!(matches!(r.next(&mut a, 100), Ok(Step::Consumed(_))));
        let mut b = client_frame(true, 0, &[0; 60]);
        assert_eq!(r.next(&mut b, 100), Err(ProtocolError::TooBig(100)));
    }

    #[test]
    fn rsv1_marks_a_compressed_message_only_with_deflate_on() {
        let mut r = FrameReader::new();
        let mut f = client_frame(true, 1, b"zz");
        f[0] |= 0x40;
        assert_eq!(
            r.next(&mut f.clone(), 100),
            Err(ProtocolError::ReservedBits)
        );
        let n = f.len();
        assert_eq!(
            r.next_deflate(&mut f, 100, true).unwrap(),
            Step::Message(
                n,
                Message::Deflated {
                    text: true,
                    payload: b"zz"
                }
            )
        );
        // Fragmented: RSV1 on the first frame only; the message stays compressed.
        let mut buf = client_frame(false, 2, b"ab");
        buf[0] |= 0x40;
        buf.extend(client_frame(true, 0, b"cd"));
        let first = r.next_deflate(&mut buf, 100, true).unwrap();
        let Step::Consumed(at) = first else {
            panic!("{first:?}")
        };
        let step = r.next_deflate(&mut buf[at..], 100, true).unwrap();
        assert!(matches!(
            step,
            Step::Message(
                _,
                Message::Deflated {
                    text: false,
                    payload: b"abcd"
                }
            )
        ));
        // RSV1 on a continuation or a control frame is an error even with deflate.
        let mut buf = client_frame(false, 1, b"a");
        buf.extend(client_frame(true, 0, b"b"));
        let l = buf.len();
        buf[l - 7] |= 0x40;
        let Step::Consumed(at) = r.next_deflate(&mut buf, 100, true).unwrap() else {
            panic!()
        };
        assert_eq!(
            r.next_deflate(&mut buf[at..], 100, true),
            Err(ProtocolError::ReservedBits)
        );
        let mut ping = client_frame(true, 9, b"p");
        ping[0] |= 0x40;
        assert_eq!(
            FrameReader::new().next_deflate(&mut ping, 100, true),
            Err(ProtocolError::ReservedBits)
        );
    }

    #[test]
    fn unmask_matches_bytewise_xor() {
        let mask = [1, 2, 3, 4];
        let data: Vec<u8> = (0..=40).collect();
        let mut fast = data.clone();
        unmask(&mut fast, mask);
        let slow: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(fast, slow);
    }
}
