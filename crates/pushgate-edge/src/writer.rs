//! The writer: everything a connection has queued goes out in one vectored write.
//!
//! Frames are `Bytes` shared with every other recipient; the writer never copies them.
//! A burst of publications reaches a client as one `writev` carrying many frames,
//! which is where most of the fan-out speed comes from (a small write to a socket
//! costs several microseconds, nearly regardless of its size).

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes};
use pushgate_hub::ShardMetrics;
use rustix::net::SendFlags;

/// A non-blocking socket the writer can write to: tokio's (the closing phase, SSE
/// streams, which are tasks) or mio's (open WebSocket connections, which the shard's
/// poller drives, `poller.rs`). Either returns `WouldBlock` when the socket is full.
pub(crate) trait Sink {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

impl Sink for tokio::net::TcpStream {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        tokio::net::TcpStream::try_write(self, buf)
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        tokio::net::TcpStream::try_write_vectored(self, bufs)
    }
}

/// Through rustix's direct system calls: std's `write` goes through glibc's `send`,
/// which wraps every call in the bookkeeping of a thread-cancellation point
/// (`__pthread_enable/disable_asynccancel`), 2.4 % of the server's CPU at one `send`
/// per delivery (docs/benchmarks.md, "Steady state: the runtime's looks").
impl Sink for mio::net::TcpStream {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        // MSG_NOSIGNAL as std's: a peer gone is an error, not a SIGPIPE.
        retry_interrupted(|| Ok(rustix::net::send(self, buf, SendFlags::NOSIGNAL)?))
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        retry_interrupted(|| Ok(rustix::io::writev(self, bufs)?))
    }
}

/// Repeats a system call that a signal interrupted (tokio's sockets do the same).
pub(crate) fn retry_interrupted(mut op: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Most frames handed to one `writev` (Linux allows 1024 iovecs).
const MAX_IOV: usize = 256;

/// Writes as much of `out` as the socket takes without blocking.
/// Returns `Ok(true)` once `out` is empty, `Ok(false)` if the socket is full.
pub(crate) fn flush<S: Sink>(
    stream: &S,
    out: &mut VecDeque<Bytes>,
    metrics: &ShardMetrics,
) -> io::Result<bool> {
    while !out.is_empty() {
        let n = out.len().min(MAX_IOV);
        let result = if n == 1 {
            // One frame (the steady state: a connection rarely has two queued):
            // `send`, which skips the VFS layer `writev` goes through (measured in
            // docs/benchmarks.md, "Steady state: where the CPU goes").
            stream.try_write(&out[0])
        } else {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            for (slot, frame) in iov.iter_mut().zip(out.iter().take(n)) {
                *slot = IoSlice::new(frame);
            }
            stream.try_write_vectored(&iov[..n])
        };
        let written = match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(w) => w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        metrics.bytes_written.increment(written as u64);
        advance(out, written);
    }
    Ok(true)
}

/// Drops fully written frames and trims a partly written one.
fn advance(out: &mut VecDeque<Bytes>, mut written: usize) {
    while written > 0 {
        let front = out
            .front_mut()
            .expect("written bytes came from queued frames");
        if front.len() <= written {
            written -= front.len();
            out.pop_front();
        } else {
            front.advance(written);
            written = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_handles_partial_frames() {
        let mut q: VecDeque<Bytes> = ["abc", "de", "fgh"]
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        advance(&mut q, 4);
        assert_eq!(
            q,
            vec![Bytes::from_static(b"e"), Bytes::from_static(b"fgh")]
        );
        advance(&mut q, 4);
        assert!(q.is_empty());
    }
}
