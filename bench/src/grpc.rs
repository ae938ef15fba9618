//! A minimal gRPC client for pushgate's `pushgate.v1.Pushgate/PublishStream`:
//! one HTTP/2 connection (h2c, prior knowledge), one bidirectional stream,
//! publications sent as fast as HTTP/2 flow control allows, each reply
//! (`seq`, ok or per-item error) matched to its publication.
//!
//! Hand-written, like the HTTP publisher, to keep tonic/h2/prost out of the
//! load generator's build (it shares 2 cores with the servers it measures):
//! HPACK is only written (literal fields, never indexed), response headers
//! and trailers are skipped, not decoded; a stream that ends before every
//! publication got its reply is reported as an error.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::target::Endpoint;

const PATH: &str = "/pushgate.v1.Pushgate/PublishStream";
const STREAM: u32 = 1;
/// The default SETTINGS_MAX_FRAME_SIZE every peer accepts.
const MAX_FRAME: usize = 16_384;
/// Our receive windows: large enough that a bounded run never needs a
/// WINDOW_UPDATE from us.
const OUR_WINDOW: u32 = (1 << 31) - 1;
/// Nothing from the server for this long fails the stream.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const END_STREAM: u8 = 1;
const ACK: u8 = 1;
const END_HEADERS: u8 = 4;
const PADDED: u8 = 8;

/// One reply of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Per-item error: gRPC code and message.
    Refused(i32, String),
}

/// Send-side flow control, shared by the writer and the reader.
struct Window {
    conn: Cell<i64>,
    stream: Cell<i64>,
    changed: Notify,
}

/// Publish `n` broadcast publications (`all = true`) on one PublishStream.
/// `make(i)` gives publication i's text payload, built just before it is
/// written; `done(seq, outcome)` is called for each reply, in order.
pub async fn publish_stream(
    ep: &Endpoint,
    n: usize,
    mut make: impl FnMut(usize) -> Vec<u8>,
    mut done: impl FnMut(usize, Outcome),
) -> Result<()> {
    let s = tokio::time::timeout(IDLE_TIMEOUT, TcpStream::connect(ep.addr))
        .await
        .context("gRPC connect timed out")?
        .with_context(|| format!("connecting to {}", ep.addr))?;
    s.set_nodelay(true)?;
    let (rd, mut wr) = s.into_split();
    let mut out = Vec::with_capacity(64 << 10);
    out.extend_from_slice(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    // SETTINGS: ENABLE_PUSH 0, INITIAL_WINDOW_SIZE max.
    let mut settings = Vec::new();
    settings.extend_from_slice(&2u16.to_be_bytes());
    settings.extend_from_slice(&0u32.to_be_bytes());
    settings.extend_from_slice(&4u16.to_be_bytes());
    settings.extend_from_slice(&OUR_WINDOW.to_be_bytes());
    frame(&mut out, SETTINGS, 0, 0, &settings);
    frame(
        &mut out,
        WINDOW_UPDATE,
        0,
        0,
        &(OUR_WINDOW - 65_535).to_be_bytes(),
    );
    frame(&mut out, HEADERS, END_HEADERS, STREAM, &request_headers(ep));
    wr.write_all(&out).await?;

    let win = Rc::new(Window {
        conn: Cell::new(65_535),
        stream: Cell::new(65_535),
        changed: Notify::new(),
    });
    let failed: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    let acked = Rc::new(Cell::new(0usize));
    let ctl: Rc<RefCell<Vec<u8>>> = Rc::new(RefCell::new(Vec::new()));
    let reader = {
        let (win, failed, ctl) = (win.clone(), failed.clone(), ctl.clone());
        async move {
            let r = read_replies(rd, n, &win, &ctl, &mut done).await;
            if let Err(e) = &r {
                *failed.borrow_mut() = Some(format!("{e:#}"));
            }
            win.changed.notify_one();
            r
        }
    };
    let writer = async {
        let mut msg = Vec::with_capacity(MAX_FRAME + 1024);
        let mut i = 0;
        while i < n {
            // Fill one DATA frame with whole gRPC messages.
            msg.clear();
            while i < n && msg.len() < MAX_FRAME - 512 {
                let payload = make(i);
                push_message(&mut msg, i as u64, &payload);
                i += 1;
            }
            send_data(&mut wr, &win, &ctl, &failed, &msg, i == n).await?;
        }
        if n == 0 {
            send_data(&mut wr, &win, &ctl, &failed, &[], true).await?;
        }
        // Keep answering SETTINGS / PING until the reader is done.
        loop {
            if failed.borrow().is_some() || acked.get() >= n {
                break;
            }
            flush_ctl(&mut wr, &ctl).await?;
            tokio::select! {
                _ = win.changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    let reader = async {
        let r = reader.await;
        acked.set(n);
        win.changed.notify_one();
        r
    };
    let (r, w) = tokio::join!(reader, writer);
    let _ = wr.shutdown().await;
    r?;
    w?;
    Ok(())
}

/// Write one DATA frame (split to fit the send windows), answering the
/// reader's control frames on the way.
async fn send_data(
    wr: &mut OwnedWriteHalf,
    win: &Window,
    ctl: &RefCell<Vec<u8>>,
    failed: &RefCell<Option<String>>,
    mut data: &[u8],
    last: bool,
) -> Result<()> {
    let mut out = Vec::with_capacity(MAX_FRAME + 9);
    loop {
        if let Some(e) = failed.borrow().as_ref() {
            bail!("PublishStream: {e}");
        }
        let avail = win.conn.get().min(win.stream.get()).max(0) as usize;
        if avail == 0 && !data.is_empty() {
            flush_ctl(wr, ctl).await?;
            tokio::time::timeout(IDLE_TIMEOUT, win.changed.notified())
                .await
                .context("PublishStream: no flow-control credit for 30 s")?;
            continue;
        }
        let take = data.len().min(avail).min(MAX_FRAME);
        let end = last && take == data.len();
        out.clear();
        out.extend_from_slice(&std::mem::take(&mut *ctl.borrow_mut()));
        frame(
            &mut out,
            DATA,
            if end { END_STREAM } else { 0 },
            STREAM,
            &data[..take],
        );
        win.conn.set(win.conn.get() - take as i64);
        win.stream.set(win.stream.get() - take as i64);
        wr.write_all(&out).await?;
        data = &data[take..];
        if data.is_empty() {
            return Ok(());
        }
    }
}

async fn flush_ctl(wr: &mut OwnedWriteHalf, ctl: &RefCell<Vec<u8>>) -> Result<()> {
    let out = std::mem::take(&mut *ctl.borrow_mut());
    if !out.is_empty() {
        wr.write_all(&out).await?;
    }
    Ok(())
}

/// Read frames until `n` replies arrived (Ok) or the stream ended early.
async fn read_replies(
    mut rd: OwnedReadHalf,
    n: usize,
    win: &Window,
    ctl: &RefCell<Vec<u8>>,
    done: &mut impl FnMut(usize, Outcome),
) -> Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut grpc: Vec<u8> = Vec::new();
    let mut replies = 0usize;
    let mut initial_window = 65_535i64;
    loop {
        // Parse every complete frame in `buf`.
        let mut pos = 0;
        while buf.len() - pos >= 9 {
            let h = &buf[pos..pos + 9];
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            if buf.len() - pos < 9 + len {
                break;
            }
            let (ty, flags) = (h[3], h[4]);
            let sid = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let body = &buf[pos + 9..pos + 9 + len];
            pos += 9 + len;
            match ty {
                DATA if sid == STREAM => {
                    grpc.extend_from_slice(unpad(body, flags)?);
                    let mut off = 0;
                    while grpc.len() - off >= 5 {
                        let mlen = u32::from_be_bytes([
                            grpc[off + 1],
                            grpc[off + 2],
                            grpc[off + 3],
                            grpc[off + 4],
                        ]) as usize;
                        if grpc.len() - off < 5 + mlen {
                            break;
                        }
                        let (seq, outcome) = decode_reply(&grpc[off + 5..off + 5 + mlen])?;
                        done(seq as usize, outcome);
                        replies += 1;
                        off += 5 + mlen;
                    }
                    grpc.drain(..off);
                    if replies >= n {
                        return Ok(());
                    }
                    if flags & END_STREAM != 0 {
                        bail!("stream ended after {replies} of {n} replies");
                    }
                }
                HEADERS if sid == STREAM && flags & END_STREAM != 0 => {
                    if replies >= n {
                        return Ok(());
                    }
                    bail!("stream ended (trailers) after {replies} of {n} replies");
                }
                SETTINGS if flags & ACK == 0 => {
                    for s in body.chunks_exact(6) {
                        let id = u16::from_be_bytes([s[0], s[1]]);
                        let v = i64::from(u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
                        if id == 4 {
                            win.stream.set(win.stream.get() + v - initial_window);
                            initial_window = v;
                        }
                    }
                    frame(&mut ctl.borrow_mut(), SETTINGS, ACK, 0, &[]);
                    win.changed.notify_one();
                }
                PING if flags & ACK == 0 => {
                    frame(&mut ctl.borrow_mut(), PING, ACK, 0, body);
                    win.changed.notify_one();
                }
                WINDOW_UPDATE if body.len() == 4 => {
                    let inc = i64::from(u32::from_be_bytes([body[0], body[1], body[2], body[3]]));
                    let w = if sid == 0 { &win.conn } else { &win.stream };
                    w.set(w.get() + (inc & 0x7fff_ffff));
                    win.changed.notify_one();
                }
                RST_STREAM if sid == STREAM => {
                    bail!("stream reset by the server after {replies} of {n} replies")
                }
                GOAWAY => bail!("server sent GOAWAY after {replies} of {n} replies"),
                _ => {}
            }
        }
        buf.drain(..pos);
        let got = tokio::time::timeout(IDLE_TIMEOUT, rd.read_buf(&mut buf))
            .await
            .context("PublishStream: no reply for 30 s")??;
        if got == 0 {
            bail!("server closed the connection after {replies} of {n} replies");
        }
    }
}

fn unpad(body: &[u8], flags: u8) -> Result<&[u8]> {
    if flags & PADDED == 0 {
        return Ok(body);
    }
    let pad = usize::from(*body.first().context("empty padded frame")?);
    if pad + 1 > body.len() {
        bail!("bad padding");
    }
    Ok(&body[1..body.len() - pad])
}

fn frame(out: &mut Vec<u8>, ty: u8, flags: u8, stream: u32, body: &[u8]) {
    let len = body.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(body);
}

/// HPACK block: every field a literal without indexing, new name, no Huffman.
fn request_headers(ep: &Endpoint) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", PATH),
        (":authority", ep.host.as_str()),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        b.push(0);
        hpack_str(&mut b, k.as_bytes());
        hpack_str(&mut b, v.as_bytes());
    }
    b
}

/// HPACK string literal (H = 0) with its 7-bit-prefix length.
fn hpack_str(b: &mut Vec<u8>, s: &[u8]) {
    let mut len = s.len();
    if len < 127 {
        b.push(len as u8);
    } else {
        b.push(127);
        len -= 127;
        while len >= 128 {
            b.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        b.push(len as u8);
    }
    b.extend_from_slice(s);
}

fn varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

/// One gRPC message: `PublishStreamRequest { seq, publication { target { all:
/// true }, text } }`, with its 5-byte prefix.
fn push_message(out: &mut Vec<u8>, seq: u64, text: &[u8]) {
    let mut publication = vec![0x0a, 0x02, 0x08, 0x01, 0x12];
    varint(&mut publication, text.len() as u64);
    publication.extend_from_slice(text);
    let mut req = vec![0x08];
    varint(&mut req, seq);
    req.push(0x12);
    varint(&mut req, publication.len() as u64);
    req.extend_from_slice(&publication);
    out.push(0);
    out.extend_from_slice(&(req.len() as u32).to_be_bytes());
    out.extend_from_slice(&req);
}

fn read_varint(b: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).context("truncated varint")?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    bail!("varint too long")
}

/// Fields of one protobuf message: (field number, varint value or bytes).
fn fields(b: &[u8]) -> Result<Vec<(u64, u64, &[u8])>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let tag = read_varint(b, &mut pos)?;
        let (field, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => out.push((field, read_varint(b, &mut pos)?, &b[..0])),
            2 => {
                let len = read_varint(b, &mut pos)? as usize;
                let body = b.get(pos..pos + len).context("truncated field")?;
                pos += len;
                out.push((field, 0, body));
            }
            1 => pos += 8,
            5 => pos += 4,
            _ => bail!("unsupported wire type {wire}"),
        }
    }
    Ok(out)
}

/// `PublishStreamReply`: its seq and whether it was accepted.
fn decode_reply(b: &[u8]) -> Result<(u64, Outcome)> {
    let mut seq = 0;
    let mut outcome = None;
    for (f, v, body) in fields(b)? {
        match f {
            1 => seq = v,
            2 => outcome = Some(Outcome::Ok),
            3 => {
                let (mut code, mut msg) = (0, String::new());
                for (g, w, s) in fields(body)? {
                    match g {
                        1 => code = w as i32,
                        2 => msg = String::from_utf8_lossy(s).into_owned(),
                        _ => {}
                    }
                }
                outcome = Some(Outcome::Refused(code, msg));
            }
            _ => {}
        }
    }
    Ok((
        seq,
        outcome.unwrap_or(Outcome::Refused(-1, "reply without result".into())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_encoding_and_reply_decoding() {
        let mut m = Vec::new();
        push_message(&mut m, 300, b"hi");
        // prefix, seq 300, publication {target{all}, text "hi"}
        assert_eq!(
            m,
            [0, 0, 0, 0, 13, 0x08, 0xac, 0x02, 0x12, 8, 0x0a, 2, 0x08, 1, 0x12, 2, b'h', b'i']
        );
        // seq 7, ok {}
        assert_eq!(decode_reply(&[0x08, 7, 0x12, 0]).unwrap(), (7, Outcome::Ok));
        // seq 1, error {code 8, message "x"}
        assert_eq!(
            decode_reply(&[0x08, 1, 0x1a, 5, 0x08, 8, 0x12, 1, b'x']).unwrap(),
            (1, Outcome::Refused(8, "x".into()))
        );
        let mut h = Vec::new();
        hpack_str(&mut h, &[b'a'; 130]);
        assert_eq!(&h[..2], &[127, 3]);
    }
}
