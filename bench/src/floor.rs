//! The latency floor of this machine, measured in the same run as a latency
//! scenario: the time to write one frame to every connection once, over
//! loopback TCP, from one thread, with nothing else to do (no parsing, no
//! fan-out, no queues). No server can deliver one publication to N
//! connections faster than that on the same machine, so the report gives
//! each server's p50/p99 as multiples of it (issue #14: on the 2-core VM one
//! loopback write costs ~10-14 µs, so 1,000 connections put p50 near 10 ms
//! for every server).
//!
//! Descriptors: two per connection (both ends live in this process), so at
//! most [`MAX_PAIRS`] pairs are opened and a larger audience is scaled
//! linearly from them (the cost is one `write` per connection); the report
//! says when it was scaled.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use anyhow::{Context, Result};

/// Socket pairs opened at most (two descriptors each, under the 20,000 cap
/// beside the bench's own client connections).
pub const MAX_PAIRS: usize = 4_000;
/// Rounds measured; the median is the floor.
const ROUNDS: usize = 15;

/// The floor for `conns` connections and `size`-byte payloads, in µs
/// (median of [`ROUNDS`] rounds), and whether it was scaled from fewer pairs.
pub fn measure(conns: usize, size: usize) -> Result<(u64, bool)> {
    let pairs = conns.clamp(1, MAX_PAIRS);
    let listener = TcpListener::bind("127.0.0.1:0").context("floor: bind")?;
    let addr = listener.local_addr()?;
    let mut senders = Vec::with_capacity(pairs);
    let mut receivers = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        let client = TcpStream::connect(addr).context("floor: connect")?;
        let (server, _) = listener.accept().context("floor: accept")?;
        // As a push server sends: no Nagle delay.
        server.set_nodelay(true)?;
        senders.push(server);
        receivers.push(client);
    }
    let frame = text_frame(size);
    let mut buf = vec![0u8; frame.len()];
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for s in &mut senders {
            s.write_all(&frame).context("floor: write")?;
        }
        rounds.push(start.elapsed().as_micros() as u64);
        // Read everything back outside the timed part, so no buffer fills.
        for r in &mut receivers {
            r.read_exact(&mut buf).context("floor: read")?;
        }
    }
    rounds.sort_unstable();
    let median = rounds[rounds.len() / 2];
    let scaled = pairs < conns;
    Ok((median * conns as u64 / pairs as u64, scaled))
}

/// An unmasked server-to-client text frame of `size` payload bytes.
fn text_frame(size: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(size + 10);
    f.push(0x81);
    match size {
        0..=125 => f.push(size as u8),
        126..=65_535 => {
            f.push(126);
            f.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => {
            f.push(127);
            f.extend_from_slice(&(size as u64).to_be_bytes());
        }
    }
    f.resize(f.len() + size, b'x');
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths() {
        assert_eq!(text_frame(100).len(), 102);
        assert_eq!(text_frame(1000).len(), 1004);
        assert_eq!(text_frame(70_000).len(), 70_010);
    }

    #[test]
    fn measures_a_small_audience() {
        // Every frame written is read back whole, or this errors.
        let (_, scaled) = measure(10, 100).unwrap();
        assert!(!scaled);
    }
}
