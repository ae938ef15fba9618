//! permessage-deflate (RFC 7692) payloads: compressing a server message, inflating a
//! client message within a bound.
//!
//! Both directions run without context takeover (pushgate negotiates
//! `server_no_context_takeover` and `client_no_context_takeover` on every connection
//! that uses the extension, `pushgate-edge`'s `deflate.rs`): each message is a
//! stream of its own. So a publication compressed once is the same bytes for every
//! recipient, and no connection keeps a compressor or a decompressor: each thread
//! keeps one of each and resets it between messages.
//!
//! Raw deflate (no zlib header), the `0x00 0x00 0xff 0xff` tail of a sync flush
//! stripped from what is sent and appended to what is received (RFC 7692 §7.2.1,
//! §7.2.2). The backend is `flate2` over `zlib-rs`.

use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use thiserror::Error;

use crate::frame::{header_len, OpCode};

/// What a sync flush ends with, stripped from every compressed message (RFC 7692 §7.2.1).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The RSV1 bit: set on the first frame of a compressed message.
pub const RSV1: u8 = 0x40;

/// Highest compression level (zlib's 9).
pub const MAX_LEVEL: u32 = 9;

thread_local! {
    /// This thread's compressor and its level; reset after each message.
    static DEFLATE: RefCell<Option<(u32, Compress)>> = const { RefCell::new(None) };
    /// This thread's decompressor; reset before each message.
    static INFLATE: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Compresses `payload` as one message of its own and returns it as a complete, final,
/// unmasked frame with RSV1 set; `None` if compressing would not make it smaller.
pub fn deflate_frame(opcode: OpCode, payload: &[u8], level: u32) -> Option<Bytes> {
    let body = deflate_payload(payload, level);
    if header_len(body.len()) + body.len() >= header_len(payload.len()) + payload.len() {
        return None;
    }
    let mut buf = BytesMut::with_capacity(header_len(body.len()) + body.len());
    crate::frame::put_header(&mut buf, opcode, body.len());
    buf[0] |= RSV1;
    buf.put_slice(&body);
    Some(buf.freeze())
}

/// Raw deflate of one message, sync-flushed, without the [`TAIL`].
pub fn deflate_payload(payload: &[u8], level: u32) -> Vec<u8> {
    DEFLATE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let level = level.min(MAX_LEVEL);
        if cell.as_ref().is_none_or(|(l, _)| *l != level) {
            *cell = Some((level, Compress::new(Compression::new(level), false)));
        }
        let (_, c) = cell.as_mut().expect("just set");
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        let start_in = c.total_in();
        loop {
            let used = (c.total_in() - start_in) as usize;
            c.compress_vec(&payload[used..], &mut out, FlushCompress::Sync)
                .expect("deflate of an in-memory buffer cannot fail");
            let used = (c.total_in() - start_in) as usize;
            // Done once every byte went in and the flush fitted (output left room).
            if used == payload.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        c.reset();
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        out
    })
}

/// Why a client's compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum InflateError {
    /// Inflated, it would exceed the limit (close 1009): a zip bomb stops here, having
    /// produced at most `limit + 1` bytes.
    #[error("inflated message larger than {0} bytes")]
    TooBig(usize),
    /// Not a valid deflate stream (close 1007: the payload is invalid data).
    #[error("invalid compressed data")]
    Corrupt,
}

/// Inflates one client message (its payload as received, without the tail) into `out`
/// (cleared first), producing at most `max` bytes. Uses this thread's decompressor:
/// nothing is kept per connection.
pub fn inflate(payload: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), InflateError> {
    INFLATE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let d = cell.get_or_insert_with(|| Decompress::new(false));
        d.reset(false);
        out.clear();
        let r = inflate_with(d, payload, out, max);
        if r.is_err() {
            d.reset(false);
        }
        r
    })
}

fn inflate_with(
    d: &mut Decompress,
    payload: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<(), InflateError> {
    for part in [payload, &TAIL[..]] {
        let mut input = part;
        loop {
            if out.len() == out.capacity() {
                if out.len() > max {
                    return Err(InflateError::TooBig(max));
                }
                // Grow by doubling, never past `max + 1`: one byte over proves the bomb.
                let want = (out.capacity() * 2).max(4096).min(max + 1) - out.len();
                out.reserve_exact(want.max(1));
            }
            let (in0, out0) = (d.total_in(), d.total_out());
            let status = d
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            if out.len() > max {
                return Err(InflateError::TooBig(max));
            }
            let used = (d.total_in() - in0) as usize;
            let produced = d.total_out() - out0;
            input = &input[used..];
            if status == Status::StreamEnd {
                // A final block ends the message; anything after it (the tail) is moot.
                return Ok(());
            }
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if used == 0 && produced == 0 && out.len() < out.capacity() {
                return Err(InflateError::Corrupt); // no progress with room to spare
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(n: usize) -> Vec<u8> {
        let mut s = String::from("[");
        let mut i = 0;
        while s.len() < n {
            s.push_str(&format!(
                "{{\"id\":{i},\"price\":{}.25,\"sym\":\"ABC\"}},",
                i * 7
            ));
            i += 1;
        }
        s.into_bytes()
    }

    #[test]
    fn round_trips_and_strips_the_tail() {
        for n in [0usize, 1, 100, 2048, 70_000] {
            let data = json(n);
            let z = deflate_payload(&data, 6);
            assert!(!z.ends_with(&TAIL) || z.is_empty());
            let mut out = Vec::new();
            inflate(&z, &mut out, 1 << 20).unwrap();
            assert_eq!(out, data, "{n} bytes");
        }
    }

    #[test]
    fn rfc7692_example_hello() {
        // RFC 7692 §7.2.3.1: "Hello" compressed without context takeover.
        let mut out = Vec::new();
        inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.3: the same with a final, stored block (BFINAL set, no tail needed).
        inflate(
            &[
                0x01, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            &mut out,
            100,
        )
        .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn frame_has_rsv1_and_is_refused_when_not_smaller() {
        let data = json(2048);
        let f = deflate_frame(OpCode::Text, &data, 6).expect("JSON compresses");
        assert_eq!(f[0], 0x80 | RSV1 | 0x1);
        assert!(f.len() < data.len() / 2);
        assert_eq!(deflate_frame(OpCode::Text, b"x", 6), None);
    }

    #[test]
    fn a_zip_bomb_stops_one_byte_past_the_limit() {
        let bomb = deflate_payload(&vec![0u8; 10 << 20], 9);
        assert!(bomb.len() < 20_000);
        let mut out = Vec::new();
        assert_eq!(
            inflate(&bomb, &mut out, 65536),
            Err(InflateError::TooBig(65536))
        );
        assert!(out.capacity() <= 65537, "grew to {}", out.capacity());
        // Exactly at the limit passes; the thread's decompressor is reusable after.
        let at = deflate_payload(&vec![7u8; 65536], 9);
        inflate(&at, &mut out, 65536).unwrap();
        assert_eq!(out.len(), 65536);
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut out = Vec::new();
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff, 0xff], &mut out, 1000),
            Err(InflateError::Corrupt)
        );
    }
}
