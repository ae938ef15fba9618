//! Opening one client connection: TCP connect from a spread of loopback
//! source addresses, the WebSocket handshake, and (channels scenario) the
//! pushgate subscription. Then the connection is handed to `recv`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

use crate::client::WorkerConfig;
use crate::frame;
use crate::recv::{self, Conn, Shared};

/// Whole life of connection `idx`: connect (at most `handshake_concurrency`
/// at a time), then receive until the server closes or the worker exits.
pub async fn conn_task(idx: usize, cfg: Rc<WorkerConfig>, sh: Rc<Shared>, sem: Rc<Semaphore>) {
    let permit = sem.acquire().await;
    // Boxed: the handshake's buffers and futures are only needed briefly;
    // inline they would set the size of every long-lived task.
    let res = tokio::time::timeout(cfg.connect_timeout, Box::pin(open(idx, &cfg))).await;
    drop(permit);
    let (mut stream, leftover) = match res {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let mut s = sh.stats.borrow_mut();
            s.failed += 1;
            s.error(format!("connect: {e:#}"));
            return;
        }
        Err(_) => {
            let mut s = sh.stats.borrow_mut();
            s.failed += 1;
            s.error("connect: timed out".into());
            return;
        }
    };
    {
        let mut s = sh.stats.borrow_mut();
        s.connected += 1;
        s.open += 1;
    }
    if cfg.no_read {
        // Hold the socket without reading until the coordinator's finish;
        // then drain it, to see whether the server closed it meanwhile.
        sh.drain.notified().await;
    }
    let mut c = Conn::new(idx as u64, cfg.max_seq, leftover);
    if let Err(e) = recv::read_loop(&mut stream, &mut c, &sh).await {
        sh.stats.borrow_mut().error(format!("read: {e:#}"));
    }
    sh.stats.borrow_mut().open -= 1;
}

/// Connect, handshake and subscribe. Returns the stream and the bytes
/// already read past the handshake response (they belong to the frame
/// stream, e.g. pushgate's "connected" message).
pub async fn open(idx: usize, cfg: &WorkerConfig) -> Result<(TcpStream, Vec<u8>)> {
    let (mut stream, mut leftover) = connect(idx, cfg).await?;
    if cfg.pusher {
        crate::pusher::subscribe(&mut stream, &mut leftover, idx).await?;
    }
    if let Some((total, per_conn)) = cfg.channels {
        subscribe(&mut stream, &mut leftover, idx, total, per_conn).await?;
    }
    leftover.shrink_to_fit();
    Ok((stream, leftover))
}

/// Source address for connection `idx`: spread over 127.0.0.1–127.0.0.255 so
/// that more than ~28k connections to one server port do not exhaust the
/// ephemeral ports of a single source address.
fn source_addr(idx: usize) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (idx % 255) as u8)),
        0,
    )
}

async fn connect(idx: usize, cfg: &WorkerConfig) -> Result<(TcpStream, Vec<u8>)> {
    let sock = match cfg.ws.addr {
        SocketAddr::V4(_) => {
            let s = TcpSocket::new_v4()?;
            s.bind(source_addr(idx)).context("bind source address")?;
            s
        }
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if cfg.no_read {
        // A small receive window makes a never-reading client push back on
        // the server quickly, like a slow mobile client would.
        sock.set_recv_buffer_size(4096)?;
    }
    let mut stream = sock.connect(cfg.ws.addr).await?;
    stream.set_nodelay(true)?;
    let extensions = if cfg.deflate {
        format!("Sec-WebSocket-Extensions: {}\r\n", crate::deflate::OFFER)
    } else {
        String::new()
    };
    if cfg.ws.sse {
        return open_sse(stream, cfg).await;
    }
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n",
        cfg.ws.path,
        cfg.ws.host,
        frame::HANDSHAKE_KEY
    );
    stream.write_all(req.as_bytes()).await?;

    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() > 8192 {
            bail!("handshake response headers too large");
        }
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("server closed during handshake");
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(n) = resp.parse(&buf)? {
            if resp.code != Some(101) {
                bail!("handshake answered {:?} instead of 101", resp.code);
            }
            let accept = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
                .map(|h| h.value);
            if accept != Some(frame::HANDSHAKE_ACCEPT.as_bytes()) {
                bail!("bad Sec-WebSocket-Accept");
            }
            if cfg.deflate {
                let ext = resp
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
                    .map(|h| h.value);
                crate::deflate::check_response(ext)?;
            }
            return Ok((stream, buf.split_off(n)));
        }
    }
}

/// `GET` of pushgate's event stream: answered 200, then the events (the bytes
/// after the head are returned, as after a WebSocket handshake).
async fn open_sse(mut stream: TcpStream, cfg: &WorkerConfig) -> Result<(TcpStream, Vec<u8>)> {
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        cfg.ws.path, cfg.ws.host
    );
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() > 8192 {
            bail!("response headers too large");
        }
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("server closed before answering the stream request");
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(n) = resp.parse(&buf)? {
            if resp.code != Some(200) {
                bail!("event stream answered {:?} instead of 200", resp.code);
            }
            return Ok((stream, buf.split_off(n)));
        }
    }
}

/// Deterministic pseudo-random channel set of connection `idx`; the
/// coordinator uses the same function to know how many deliveries to expect.
pub fn channels_for(idx: usize, total: usize, per_conn: usize) -> Vec<usize> {
    let per_conn = per_conn.min(total);
    let mut out = Vec::with_capacity(per_conn);
    let mut x = (idx as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    while out.len() < per_conn {
        // splitmix64 step
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let c = (z % total as u64) as usize;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

pub fn channel_name(c: usize) -> String {
    format!("c{c}")
}

/// Send pushgate's subscribe message and wait for its `subscribed` reply, so
/// that the worker reports ready only once every subscription is in place
/// (a publication racing a subscription would count as lost). The frames
/// read meanwhile stay in `pending` for the receive loop.
async fn subscribe(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    idx: usize,
    total: usize,
    per_conn: usize,
) -> Result<()> {
    let names: Vec<String> = channels_for(idx, total, per_conn)
        .into_iter()
        .map(channel_name)
        .collect();
    let msg = serde_json::json!({"type": "subscribe", "channels": names}).to_string();
    let mut seed = idx as u64 | 1;
    let mut out = Vec::with_capacity(msg.len() + 14);
    frame::encode_client_frame(
        frame::OP_TEXT,
        msg.as_bytes(),
        frame::mask_key(&mut seed),
        &mut out,
    );
    stream.write_all(&out).await?;
    loop {
        if has_subscribed(pending)? {
            return Ok(());
        }
        if pending.len() > 1 << 20 {
            bail!("no subscribed reply within 1 MiB of frames");
        }
        if stream.read_buf(pending).await? == 0 {
            bail!("server closed before confirming the subscription");
        }
    }
}

/// Whether the complete frames in `buf` include a `subscribed` reply (or an
/// error, which fails the connection).
fn has_subscribed(buf: &[u8]) -> Result<bool> {
    let mut pos = 0;
    while let Some(h) = frame::parse_header(&buf[pos..])? {
        let end = pos + h.total_len();
        if end > buf.len() {
            break;
        }
        let body = &buf[pos + h.header_len..end];
        if contains(body, br#""type":"subscribed""#) {
            return Ok(true);
        }
        if contains(body, br#""type":"error""#) {
            bail!("subscribe refused: {}", String::from_utf8_lossy(body));
        }
        pos = end;
    }
    Ok(false)
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_sets_are_distinct_and_deterministic() {
        let a = channels_for(17, 1000, 5);
        assert_eq!(a.len(), 5);
        assert_eq!(a, channels_for(17, 1000, 5));
        let mut d = a.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 5);
        assert!(a.iter().all(|&c| c < 1000));
        assert_eq!(channels_for(3, 2, 5).len(), 2);
    }

    #[test]
    fn source_addrs_cycle_through_loopback() {
        assert_eq!(source_addr(0).ip(), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(
            source_addr(254).ip(),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 255))
        );
        assert_eq!(
            source_addr(255).ip(),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))
        );
    }

    #[test]
    fn finds_subscribed_reply_after_hello() {
        let mut buf = vec![0x81, 20];
        buf.extend(br#"{"type":"connected"}"#);
        assert!(!has_subscribed(&buf).unwrap());
        let reply = br#"{"type":"subscribed","channels":["c1"]}"#;
        buf.extend([0x81, reply.len() as u8]);
        buf.extend(&reply[..10]);
        assert!(!has_subscribed(&buf).unwrap());
        buf.extend(&reply[10..]);
        assert!(has_subscribed(&buf).unwrap());
        let e = br#"{"type":"error"}"#;
        let err = [&[0x81u8, e.len() as u8][..], e].concat();
        assert!(has_subscribed(&err).is_err());
    }
}
