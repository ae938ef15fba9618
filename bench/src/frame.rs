//! Minimal WebSocket (RFC 6455) framing for the client side.
//!
//! Only what the load generator needs: parse server frames (normally
//! unmasked) and build masked client frames (pong, close, subscribe).
//! Hand-written rather than a WebSocket library so the receive path stays a
//! few comparisons per frame: the generator must be much cheaper per delivery
//! than the servers it measures, which share the same 2 cores.

use anyhow::{bail, Result};

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Frames larger than this are treated as a protocol error: bench payloads
/// are small, so a huge length means the stream is out of sync.
pub const MAX_FRAME: usize = 16 << 20;

/// The RFC 6455 sample key and its accept value. Servers do not require keys
/// to be unique, and a fixed key lets us verify the handshake without SHA-1.
pub const HANDSHAKE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const HANDSHAKE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: u8,
    pub header_len: usize,
    pub payload_len: usize,
    pub mask: Option<[u8; 4]>,
    /// RSV1: a permessage-deflate message (only a `--deflate` worker gets one).
    pub compressed: bool,
}

impl FrameHeader {
    pub fn total_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Parse a frame header at the start of `buf`. `Ok(None)` means more bytes
/// are needed.
pub fn parse_header(buf: &[u8]) -> Result<Option<FrameHeader>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x30 != 0 {
        // permessage-deflate uses RSV1 only; RSV2 and RSV3 must be zero.
        bail!("frame with RSV bits set: {b0:#04x}");
    }
    let masked = b1 & 0x80 != 0;
    let (len, mut off) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    if len > MAX_FRAME as u64 {
        bail!("frame too large: {len} bytes");
    }
    let mask = if masked {
        if buf.len() < off + 4 {
            return Ok(None);
        }
        let m = [buf[off], buf[off + 1], buf[off + 2], buf[off + 3]];
        off += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        header_len: off,
        payload_len: len as usize,
        mask,
        compressed: b0 & 0x40 != 0,
    }))
}

/// XOR `data` with the 4-byte mask key (same operation masks and unmasks).
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Append a complete, FIN, masked client frame to `out`. Client-to-server
/// frames must be masked (RFC 6455 §5.3); servers close the connection
/// otherwise.
pub fn encode_client_frame(opcode: u8, payload: &[u8], key: [u8; 4], out: &mut Vec<u8>) {
    out.push(0x80 | (opcode & 0x0f));
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key);
}

/// Cheap, non-cryptographic mask keys: masking only has to defeat proxy
/// cache poisoning, which is irrelevant on loopback.
pub fn mask_key(seed: &mut u64) -> [u8; 4] {
    // xorshift64
    let mut x = *seed;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *seed = x;
    (x as u32).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_small_unmasked_text() {
        let buf = [0x81, 0x03, b'a', b'b', b'c'];
        let h = parse_header(&buf).unwrap().unwrap();
        assert!(h.fin);
        assert_eq!(h.opcode, OP_TEXT);
        assert_eq!(h.header_len, 2);
        assert_eq!(h.payload_len, 3);
        assert_eq!(h.mask, None);
        assert_eq!(&buf[h.header_len..h.total_len()], b"abc");
    }

    #[test]
    fn parses_extended_lengths_and_needs_more() {
        let mut buf = vec![0x81, 126, 0x01, 0x00];
        buf.extend(std::iter::repeat_n(b'x', 256));
        let h = parse_header(&buf).unwrap().unwrap();
        assert_eq!((h.header_len, h.payload_len), (4, 256));
        assert_eq!(parse_header(&buf[..3]).unwrap(), None);

        let buf64 = [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        let h = parse_header(&buf64).unwrap().unwrap();
        assert_eq!(
            (h.opcode, h.header_len, h.payload_len),
            (OP_BINARY, 10, 65536)
        );
        assert_eq!(parse_header(&buf64[..9]).unwrap(), None);
        assert_eq!(parse_header(&[0x81]).unwrap(), None);
    }

    #[test]
    fn rejects_rsv_and_huge() {
        assert!(parse_header(&[0xA1, 0x00]).is_err());
        assert!(parse_header(&[0xC1, 0x00]).unwrap().unwrap().compressed);
        let huge = [0x81, 127, 0xff, 0, 0, 0, 0, 0, 0, 0];
        assert!(parse_header(&huge).is_err());
    }

    #[test]
    fn masked_roundtrip() {
        let mut out = Vec::new();
        let key = [1, 2, 3, 4];
        encode_client_frame(OP_PONG, b"hello", key, &mut out);
        let h = parse_header(&out).unwrap().unwrap();
        assert_eq!(h.opcode, OP_PONG);
        assert_eq!(h.mask, Some(key));
        let mut p = out[h.header_len..h.total_len()].to_vec();
        apply_mask(&mut p, key);
        assert_eq!(p, b"hello");

        let big = vec![b'z'; 300];
        out.clear();
        encode_client_frame(OP_TEXT, &big, key, &mut out);
        let h = parse_header(&out).unwrap().unwrap();
        assert_eq!((h.header_len, h.payload_len), (8, 300));
    }

    #[test]
    fn mask_keys_vary() {
        let mut s = 0x9E37_79B9_7F4A_7C15;
        assert_ne!(mask_key(&mut s), mask_key(&mut s));
    }
}
