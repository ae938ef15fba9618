//! permessage-deflate on the receive side (`worker --deflate`, the compression
//! scenario): the offer the worker sends and inflating what the server sends.
//!
//! The worker offers `client_no_context_takeover` and never compresses what it
//! sends (it sends only pongs and close frames). It accepts either server mode:
//! with `server_no_context_takeover` (pushgate) each message is inflated by a
//! reset decompressor; without it, the connection would need its own
//! decompressor, which this worker refuses at the handshake rather than
//! measure wrongly.

use anyhow::{bail, Result};
use flate2::{Decompress, FlushDecompress, Status};

/// The `Sec-WebSocket-Extensions` offer.
pub const OFFER: &str = "permessage-deflate; client_no_context_takeover; client_max_window_bits";

/// Checks the server's answer: the extension accepted without server context
/// takeover.
pub fn check_response(value: Option<&[u8]>) -> Result<()> {
    let v = String::from_utf8_lossy(value.unwrap_or_default()).to_ascii_lowercase();
    if !v.starts_with("permessage-deflate") {
        bail!("permessage-deflate was not accepted (Sec-WebSocket-Extensions: {v:?})");
    }
    if !v.contains("server_no_context_takeover") {
        bail!("the server keeps its compression context; this worker inflates each message alone");
    }
    Ok(())
}

thread_local! {
    /// The worker's one decompressor (a worker is one thread), reset per message.
    static INFLATER: std::cell::RefCell<Decompress> = std::cell::RefCell::new(Decompress::new(false));
}

/// Inflates one message (payload without the `00 00 ff ff` tail) into `out`.
pub fn inflate(payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    INFLATER.with(|d| {
        let mut d = d.borrow_mut();
        d.reset(false);
        for part in [payload, &[0, 0, 0xff, 0xff][..]] {
            let start = d.total_in();
            loop {
                if out.capacity() - out.len() < 4096 {
                    out.reserve(out.capacity().max(4096));
                }
                let used = (d.total_in() - start) as usize;
                let status = d.decompress_vec(&part[used..], out, FlushDecompress::Sync)?;
                let used = (d.total_in() - start) as usize;
                if status == Status::StreamEnd {
                    return Ok(());
                }
                if used == part.len() && out.len() < out.capacity() {
                    break;
                }
                if out.len() > crate::frame::MAX_FRAME {
                    bail!("inflated message over {} bytes", crate::frame::MAX_FRAME);
                }
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflates_the_rfc7692_hello() {
        let mut out = Vec::new();
        inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out).unwrap();
        assert_eq!(out, b"Hello");
        inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], &mut out).unwrap();
        assert_eq!(out, b"Hello", "reset between messages");
    }

    #[test]
    fn checks_the_answer() {
        assert!(check_response(Some(b"permessage-deflate; server_no_context_takeover")).is_ok());
        assert!(check_response(Some(b"permessage-deflate")).is_err());
        assert!(check_response(None).is_err());
    }
}
