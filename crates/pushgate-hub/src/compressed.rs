//! A publication's permessage-deflate frame: compressed once, lazily, shared.
//!
//! Next to each encoded publication frame (`fanout::Job`, `fanout::ChannelFrame`) sits a
//! [`Deflated`] cell. The first recipient that negotiated compression fills it (on
//! whichever shard reaches it first; another shard reaching it meanwhile waits for that
//! one compression rather than repeating it); every other compressed recipient gets a
//! refcount clone of the same bytes, as plain recipients do of the plain frame. This
//! works because every connection runs without server context takeover: a compressed
//! message depends on nothing but its own payload.
//!
//! Cost model: for a connection without compression, the per-recipient cost is one
//! byte compare (`Conn::deflate == 0`). Nobody negotiating compression means no
//! publication is ever compressed.
//!
//! A connection's `deflate` byte is the `server_max_window_bits` it asked for (15 if it
//! asked for none). Frames are compressed with a 32 KiB window, but a message's back
//! references never reach further than its own length, so the shared frame is readable
//! with a window of 2^N bytes when the payload is at most that long; a connection with
//! a smaller window gets the plain frame (RFC 7692 lets any message go uncompressed).

use std::sync::OnceLock;

use bytes::Bytes;
use metrics::Counter;
use pushgate_protocol::deflate::deflate_frame;
use pushgate_protocol::frame::OpCode;

/// The hub's compression settings (`compression_level`, `compression_min_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompressionConfig {
    /// zlib level, 1 (fastest) to 9 (smallest).
    pub level: u32,
    /// Publications whose payload is shorter go uncompressed to everyone.
    pub min_bytes: usize,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig {
            level: 1,
            min_bytes: 256,
        }
    }
}

/// The compressed form of one encoded frame, made at most once.
#[derive(Default)]
pub(crate) struct Deflated(OnceLock<Option<Compressed>>);

struct Compressed {
    frame: Bytes,
    /// The smallest window (bits) that can read `frame`: its payload's length, rounded
    /// up to a power of two, at least 2^8.
    window: u8,
}

impl Deflated {
    /// The frame for a connection whose `deflate` byte is `window` (0: no compression).
    #[inline]
    pub(crate) fn pick<'a>(&'a self, plain: &'a Bytes, window: u8, c: &Compressor) -> &'a Bytes {
        if window == 0 {
            return plain;
        }
        match self.0.get_or_init(|| c.compress(plain)) {
            Some(z) if window >= z.window => &z.frame,
            _ => plain,
        }
    }
}

/// Compresses frames for the fan-out loop; one per shard, metric handles resolved once.
pub(crate) struct Compressor {
    config: CompressionConfig,
    frames: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
}

impl Compressor {
    pub(crate) fn new(config: CompressionConfig) -> Compressor {
        Compressor {
            config,
            frames: metrics::counter!("pushgate_compressed_frames_total"),
            bytes_in: metrics::counter!("pushgate_compression_bytes_in_total"),
            bytes_out: metrics::counter!("pushgate_compression_bytes_out_total"),
        }
    }

    /// Compresses an encoded, unmasked, final frame; `None` if its payload is under the
    /// threshold, it is not a data frame, or compression would not make it smaller.
    fn compress(&self, plain: &Bytes) -> Option<Compressed> {
        let (opcode, payload) = split_frame(plain)?;
        if payload.len() < self.config.min_bytes {
            return None;
        }
        let frame = deflate_frame(opcode, payload, self.config.level)?;
        self.frames.increment(1);
        self.bytes_in.increment(plain.len() as u64);
        self.bytes_out.increment(frame.len() as u64);
        let window = (usize::BITS - payload.len().saturating_sub(1).leading_zeros()).max(8);
        Some(Compressed {
            frame,
            window: window as u8,
        })
    }
}

/// The opcode and payload of a frame made by `pushgate_protocol::frame::put_header`.
fn split_frame(frame: &[u8]) -> Option<(OpCode, &[u8])> {
    let opcode = match frame.first()? & 0x0F {
        0x1 => OpCode::Text,
        0x2 => OpCode::Binary,
        _ => return None,
    };
    let at = match frame.get(1)? & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    Some((opcode, frame.get(at..)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_protocol::encode_frame;

    fn compressor(min_bytes: usize) -> Compressor {
        Compressor::new(CompressionConfig {
            level: 6,
            min_bytes,
        })
    }

    #[test]
    fn compresses_once_and_shares_the_bytes() {
        let c = compressor(10);
        let payload = "{\"k\":\"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\"}".repeat(20);
        let plain = encode_frame(OpCode::Text, payload.as_bytes());
        let cell = Deflated::default();
        assert!(std::ptr::eq(cell.pick(&plain, 0, &c), &plain));
        let a = cell.pick(&plain, 15, &c).clone();
        let b = cell.pick(&plain, 15, &c).clone();
        assert_eq!(a[0], 0xC1, "final text frame with RSV1");
        assert_eq!(a.as_ptr(), b.as_ptr(), "one allocation for every recipient");
        assert!(a.len() < plain.len() / 4);
        // 800 bytes need a 1 KiB window (10 bits): a 9-bit reader gets the plain frame.
        assert!(std::ptr::eq(cell.pick(&plain, 9, &c), &plain));
        assert_eq!(cell.pick(&plain, 10, &c).as_ptr(), a.as_ptr());
    }

    #[test]
    fn small_payloads_and_control_frames_stay_plain() {
        let c = compressor(100);
        let small = encode_frame(OpCode::Text, &[b'a'; 99]);
        assert!(std::ptr::eq(
            Deflated::default().pick(&small, 15, &c),
            &small
        ));
        let ping = encode_frame(OpCode::Ping, &[b'a'; 120]);
        assert!(std::ptr::eq(Deflated::default().pick(&ping, 15, &c), &ping));
        let big = encode_frame(OpCode::Binary, &[b'a'; 70_000]);
        assert_eq!(split_frame(&big).map(|(_, p)| p.len()), Some(70_000));
    }
}
