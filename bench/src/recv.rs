//! The receive hot path: read whatever a connection has into one large
//! buffer shared by every connection of the worker, walk the frames in
//! place, and record each payload.
//!
//! Costs are kept per read, not per frame: one clock read, one `RefCell`
//! borrow and one syscall cover every frame a batching server (pushgate)
//! packed into that read. Per frame there is a header parse, a marker check
//! at a remembered offset, a SWAR digit parse, a bitset test and a histogram
//! record; nothing is allocated or copied (only a frame split across two
//! reads is carried over, in a small per-connection buffer).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::deflate::inflate;
use crate::frame;
use crate::payload;

/// Read buffer per worker thread. Large enough that one read drains a
/// socket's whole receive queue, so a burst costs few syscalls.
pub const READ_BUF: usize = 256 << 10;

/// Upper bound of the latency histogram, in µs (60 s).
pub const HIST_MAX_US: u64 = 60_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Counters of one worker process.
pub struct Stats {
    pub hist: Histogram<u64>,
    pub seq_count: Vec<u32>,
    pub seq_max_lat_ns: Vec<u64>,
    pub delivered: u64,
    pub dups: u64,
    pub foreign: u64,
    pub bad_seq: u64,
    pub pings: u64,
    pub server_closes: u64,
    pub eofs: u64,
    pub connected: u64,
    pub failed: u64,
    pub open: u64,
    pub first_recv_ns: u64,
    pub last_recv_ns: u64,
    pub reads: u64,
    /// Bytes of complete frames received (the wire, headers included).
    pub wire_bytes: u64,
    pub errors: Vec<String>,
}

impl Stats {
    pub fn new(max_seq: usize) -> Self {
        Self {
            hist: new_histogram(),
            seq_count: vec![0; max_seq],
            seq_max_lat_ns: vec![0; max_seq],
            delivered: 0,
            dups: 0,
            foreign: 0,
            bad_seq: 0,
            pings: 0,
            server_closes: 0,
            eofs: 0,
            connected: 0,
            failed: 0,
            open: 0,
            first_recv_ns: 0,
            last_recv_ns: 0,
            reads: 0,
            wire_bytes: 0,
            errors: Vec::new(),
        }
    }

    /// Keep only a few distinct error messages: thousands of identical
    /// "connection refused" lines help no one.
    pub fn error(&mut self, msg: String) {
        if self.errors.len() < 8 && !self.errors.contains(&msg) {
            self.errors.push(msg);
        }
    }

    fn on_message(
        &mut self,
        msg: &[u8],
        now: u64,
        seen: &mut [u64],
        size: usize,
        hint: &mut usize,
    ) {
        let n = payload::for_each(msg, size, hint, |seq, send_ns| {
            self.record(seq, send_ns, now, seen);
        });
        if n == 0 {
            self.foreign += 1;
        }
    }

    #[inline]
    fn record(&mut self, seq: u64, send_ns: u64, now: u64, seen: &mut [u64]) {
        let seq = seq as usize;
        if seq >= seen.len() * 64 || seq >= self.seq_count.len() {
            self.bad_seq += 1;
            return;
        }
        let (word, bit) = (seq / 64, 1u64 << (seq % 64));
        if seen[word] & bit != 0 {
            self.dups += 1;
            return;
        }
        seen[word] |= bit;
        let lat_ns = now.saturating_sub(send_ns);
        self.hist.saturating_record((lat_ns / 1000).max(1));
        self.delivered += 1;
        self.seq_count[seq] += 1;
        if lat_ns > self.seq_max_lat_ns[seq] {
            self.seq_max_lat_ns[seq] = lat_ns;
        }
    }
}

/// State shared by every connection of a worker (single-threaded runtime:
/// `RefCell`s are borrowed only between awaits, never across one).
pub struct Shared {
    buf: RefCell<Box<[u8]>>,
    pub stats: RefCell<Stats>,
    /// Offset of the payload marker in the last message (see
    /// [`payload::for_each`]); the same for nearly every frame of a run.
    hint: Cell<usize>,
    /// Payload size, to skip padding without scanning it.
    size: usize,
    /// Wakes the never-reading (slow) connections at finish.
    pub drain: tokio::sync::Notify,
    /// Where compressed messages are inflated (`--deflate`); empty otherwise.
    inflated: RefCell<Vec<u8>>,
    /// The connections are SSE streams (events, not frames).
    sse: bool,
}

impl Shared {
    /// Marks the connections as SSE streams.
    pub fn sse(mut self, sse: bool) -> Self {
        self.sse = sse;
        self
    }

    pub fn new(max_seq: usize, size: usize) -> Self {
        Self {
            buf: RefCell::new(vec![0u8; READ_BUF].into_boxed_slice()),
            stats: RefCell::new(Stats::new(max_seq)),
            hint: Cell::new(0),
            size,
            drain: tokio::sync::Notify::new(),
            inflated: RefCell::new(Vec::new()),
            sse: false,
        }
    }
}

/// Per-connection receive state: a few dozen bytes while idle.
pub struct Conn {
    /// Start of a frame that the last read cut off.
    partial: Vec<u8>,
    /// Reassembly of a fragmented message (no bench server fragments).
    fragments: Vec<u8>,
    /// One bit per seq: detects duplicate deliveries on this connection.
    seen: Box<[u64]>,
    mask_seed: u64,
    /// PONG / CLOSE frames to send after the current read.
    reply: Vec<u8>,
}

impl Conn {
    pub fn new(idx: u64, max_seq: usize, leftover: Vec<u8>) -> Self {
        Self {
            partial: leftover,
            fragments: Vec::new(),
            seen: vec![0u64; max_seq.div_ceil(64)].into_boxed_slice(),
            mask_seed: idx.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1,
            reply: Vec::new(),
        }
    }
}

enum Event {
    Data,
    /// The server sent a CLOSE frame (answered).
    Closed,
    Eof,
}

/// Read frames until the server closes or an error occurs. Returns Ok on an
/// orderly close.
pub async fn read_loop(stream: &mut TcpStream, c: &mut Conn, sh: &Shared) -> Result<()> {
    // Bytes that came with the handshake response (pushgate's "connected").
    if !c.partial.is_empty() {
        let mut data = std::mem::take(&mut c.partial);
        let (used, _) = process(sh, &mut data, c)?;
        c.partial = data.split_off(used);
    }
    loop {
        let ev = poll_fn(|cx| poll_receive(sh, cx, stream, c)).await?;
        if !c.reply.is_empty() {
            stream.write_all(&c.reply).await?;
            c.reply.clear();
        }
        match ev {
            Event::Data => {}
            Event::Closed => return Ok(()),
            Event::Eof => {
                sh.stats.borrow_mut().eofs += 1;
                bail!("server closed the TCP connection without a close frame")
            }
        }
    }
}

/// One read and the processing of every complete frame in it. Runs inside
/// `poll`, so the shared buffer is borrowed only synchronously.
fn poll_receive(
    sh: &Shared,
    cx: &mut TaskContext<'_>,
    stream: &mut TcpStream,
    c: &mut Conn,
) -> Poll<Result<Event>> {
    let mut guard = sh.buf.borrow_mut();
    if c.partial.len() > guard.len() / 2 {
        drop(guard);
        return poll_receive_large(sh, cx, stream, c);
    }
    let pre = c.partial.len();
    guard[..pre].copy_from_slice(&c.partial);
    let mut rb = ReadBuf::new(&mut guard[pre..]);
    // A short read makes tokio clear the readiness flag, so the next poll
    // goes straight back to epoll instead of trying a read that would block.
    match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
        Poll::Pending => return Poll::Pending,
        Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
        Poll::Ready(Ok(())) => {}
    }
    let end = pre + rb.filled().len();
    if end == pre {
        return Poll::Ready(Ok(Event::Eof));
    }
    let (used, closed) = process(sh, &mut guard[..end], c)?;
    c.partial.clear();
    c.partial.extend_from_slice(&guard[used..end]);
    Poll::Ready(Ok(if closed { Event::Closed } else { Event::Data }))
}

/// Slow path for a frame bigger than half the shared buffer: read into the
/// connection's own buffer (zero-filled first: this crate has no unsafe).
fn poll_receive_large(
    sh: &Shared,
    cx: &mut TaskContext<'_>,
    stream: &mut TcpStream,
    c: &mut Conn,
) -> Poll<Result<Event>> {
    let pre = c.partial.len();
    c.partial.resize(pre + READ_BUF, 0);
    let mut rb = ReadBuf::new(&mut c.partial[pre..]);
    let res = Pin::new(&mut *stream).poll_read(cx, &mut rb);
    let n = rb.filled().len();
    c.partial.truncate(pre + n);
    match res {
        Poll::Pending => return Poll::Pending,
        Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
        Poll::Ready(Ok(())) if n == 0 => return Poll::Ready(Ok(Event::Eof)),
        Poll::Ready(Ok(())) => {}
    }
    let mut data = std::mem::take(&mut c.partial);
    let (used, closed) = process(sh, &mut data, c)?;
    data.drain(..used);
    c.partial = data;
    Poll::Ready(Ok(if closed { Event::Closed } else { Event::Data }))
}

/// Handle every complete frame at the start of `buf`; returns the bytes
/// used and whether the server closed.
fn process(sh: &Shared, buf: &mut [u8], c: &mut Conn) -> Result<(usize, bool)> {
    if sh.sse {
        return Ok(process_sse(sh, buf, c));
    }
    let now = now_ns();
    let mut st = sh.stats.borrow_mut();
    st.reads += 1;
    let mut hint = sh.hint.get();
    let mut pos = 0;
    let mut closed = false;
    let before = st.delivered;
    loop {
        // Fast path: the frames a bench server sends are nearly all small,
        // final, unmasked text frames (2-byte header).
        if let Some(&[0x81, len]) = buf.get(pos..pos + 2) {
            if len < 126 {
                let end = pos + 2 + len as usize;
                if end > buf.len() {
                    break;
                }
                if c.fragments.is_empty() {
                    st.on_message(&buf[pos + 2..end], now, &mut c.seen, sh.size, &mut hint);
                    pos = end;
                    continue;
                }
            }
        }
        let Some(h) = frame::parse_header(&buf[pos..])? else {
            break;
        };
        let end = pos + h.total_len();
        if end > buf.len() {
            break;
        }
        let body = &mut buf[pos + h.header_len..end];
        pos = end;
        if let Some(key) = h.mask {
            frame::apply_mask(body, key);
        }
        match h.opcode {
            frame::OP_TEXT | frame::OP_BINARY if h.compressed => {
                // permessage-deflate (`--deflate`): pushgate sends every compressed
                // message in one final frame. Inflating is part of what a
                // compressing client pays per delivery.
                let mut out = sh.inflated.borrow_mut();
                inflate(body, &mut out)?;
                st.on_message(&out, now, &mut c.seen, sh.size, &mut hint);
            }
            frame::OP_TEXT | frame::OP_BINARY if h.fin && c.fragments.is_empty() => {
                st.on_message(body, now, &mut c.seen, sh.size, &mut hint);
            }
            frame::OP_TEXT | frame::OP_BINARY | frame::OP_CONT => {
                c.fragments.extend_from_slice(body);
                if h.fin {
                    st.on_message(&c.fragments, now, &mut c.seen, sh.size, &mut hint);
                    c.fragments = Vec::new();
                }
            }
            frame::OP_PING => {
                st.pings += 1;
                let key = frame::mask_key(&mut c.mask_seed);
                frame::encode_client_frame(frame::OP_PONG, body, key, &mut c.reply);
            }
            frame::OP_CLOSE => {
                st.server_closes += 1;
                // Echo the status code, as RFC 6455 §5.5.1 asks.
                let code = body.get(..2).unwrap_or(&[]);
                let key = frame::mask_key(&mut c.mask_seed);
                frame::encode_client_frame(frame::OP_CLOSE, code, key, &mut c.reply);
                closed = true;
                break;
            }
            _ => {} // pong or reserved opcodes: ignore
        }
    }
    st.wire_bytes += pos as u64;
    if st.delivered > before {
        if st.first_recv_ns == 0 {
            st.first_recv_ns = now;
        }
        st.last_recv_ns = now;
    }
    sh.hint.set(hint);
    Ok((pos, closed))
}

/// Every complete SSE event at the start of `buf` (up to its last blank line)
/// at once: the payload scan finds each publication's marker in its `data:`
/// line, as it finds several in one frame of a batching server. Heartbeat
/// comments carry none. Returns the bytes used and whether the last event was
/// pushgate's `#close`, which ends a stream.
fn process_sse(sh: &Shared, buf: &[u8], c: &mut Conn) -> (usize, bool) {
    let Some(end) = buf.windows(2).rposition(|w| w == b"\n\n").map(|i| i + 2) else {
        return (0, false);
    };
    let now = now_ns();
    let mut st = sh.stats.borrow_mut();
    st.reads += 1;
    let mut hint = sh.hint.get();
    let before = st.delivered;
    st.on_message(&buf[..end], now, &mut c.seen, sh.size, &mut hint);
    sh.hint.set(hint);
    if st.delivered > before {
        if st.first_recv_ns == 0 {
            st.first_recv_ns = now;
        }
        st.last_recv_ns = now;
    }
    let last = buf[..end - 2]
        .windows(2)
        .rposition(|w| w == b"\n\n")
        .map_or(0, |i| i + 2);
    let closed = buf[last..end].starts_with(b"event: #close");
    if closed {
        st.server_closes += 1;
    }
    (end, closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(payload: &[u8]) -> Vec<u8> {
        // Server frames are unmasked; build a masked one and unmask it.
        let mut out = Vec::new();
        frame::encode_client_frame(frame::OP_TEXT, payload, [0; 4], &mut out);
        out[1] &= 0x7f;
        out.drain(out.len() - payload.len() - 4..out.len() - payload.len());
        out
    }

    #[test]
    fn sse_events_are_counted_up_to_the_last_blank_line_and_close_ends() {
        let sh = Shared::new(10, 100).sse(true);
        let mut c = Conn::new(1, 10, Vec::new());
        let mut buf = b"event: #connected\ndata: {}\n\n".to_vec();
        for seq in [1, 2] {
            buf.extend(b"data: ");
            buf.extend(payload::encode(seq, now_ns(), 100));
            buf.extend(b"\n\n");
        }
        buf.extend(b":\n\n");
        let whole = buf.len();
        buf.extend(b"data: PGB1:00000000");
        let (used, closed) = process(&sh, &mut buf, &mut c).unwrap();
        assert_eq!((used, closed), (whole, false));
        assert_eq!(sh.stats.borrow().delivered, 2);
        assert!(sh.stats.borrow().last_recv_ns > 0);
        let mut end = b"data: x\n\nevent: #close\ndata: {\"code\":1001}\n\n".to_vec();
        let n = end.len();
        assert_eq!(process(&sh, &mut end, &mut c).unwrap(), (n, true));
    }

    #[test]
    fn dedups_counts_and_keeps_partial_frames() {
        let sh = Shared::new(10, 100);
        let mut c = Conn::new(1, 10, Vec::new());
        let p = payload::encode(3, now_ns(), 100);
        let mut buf = text(br#"{"type":"connected"}"#);
        buf.extend(text(&p));
        buf.extend(text(&p));
        buf.extend(text(&payload::encode(12, 0, 100)));
        let whole = buf.len();
        buf.extend(&text(&payload::encode(4, 0, 100))[..50]);
        let (used, closed) = process(&sh, &mut buf, &mut c).unwrap();
        assert_eq!((used, closed), (whole, false));
        let s = sh.stats.borrow();
        assert_eq!((s.delivered, s.dups, s.foreign, s.bad_seq), (1, 1, 1, 1));
        assert_eq!(s.seq_count[3], 1);
        assert!(s.last_recv_ns > 0);
    }

    #[test]
    fn answers_ping_and_close() {
        let sh = Shared::new(1, 100);
        let mut c = Conn::new(1, 1, Vec::new());
        let mut buf = vec![0x89, 0x02, b'h', b'i', 0x88, 0x02, 0x03, 0xe8];
        let (used, closed) = process(&sh, &mut buf, &mut c).unwrap();
        assert_eq!((used, closed), (8, true));
        let pong = frame::parse_header(&c.reply).unwrap().unwrap();
        assert_eq!((pong.opcode, pong.payload_len), (frame::OP_PONG, 2));
        let close = frame::parse_header(&c.reply[pong.total_len()..])
            .unwrap()
            .unwrap();
        assert_eq!((close.opcode, close.payload_len), (frame::OP_CLOSE, 2));
    }
}

#[cfg(test)]
/// User-space cost of the receive path without the kernel: run with
/// `cargo test --release -p pushgate-bench ns_per_frame -- --ignored
/// --nocapture` (or under `valgrind --tool=callgrind`).
mod perf_probe {
    use super::*;

    /// 30 pushgate frames per read, rotating over 1,000 connections so the
    /// per-connection state is not always in cache.
    #[test]
    #[ignore]
    fn ns_per_frame() {
        let sh = Shared::new(100, 100);
        let mut conns: Vec<Conn> = (0..1000).map(|i| Conn::new(i, 100, Vec::new())).collect();
        let mut one = Vec::new();
        for seq in 0..30u64 {
            let p = payload::encode(seq, now_ns(), 100);
            let env = [br#"{"type":"pub","data":""#.as_slice(), &p, b"\"}"].concat();
            one.extend([0x81, env.len() as u8]);
            one.extend(env);
        }
        let t = std::time::Instant::now();
        let rounds = 3000;
        for r in 0..rounds {
            let c = &mut conns[r % 1000];
            c.seen.iter_mut().for_each(|w| *w = 0);
            let mut b = one.clone();
            process(&sh, &mut b, c).unwrap();
        }
        let el = t.elapsed();
        eprintln!(
            "{:.1} ns/frame",
            el.as_nanos() as f64 / (rounds * 30) as f64
        );
        assert_eq!(sh.stats.borrow().delivered, rounds as u64 * 30);
    }
}
