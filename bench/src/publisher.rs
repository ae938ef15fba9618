//! Minimal HTTP/1.1 keep-alive client for `POST /publish`.
//!
//! Hand-written (plus httparse) to avoid pulling an HTTP client stack into
//! the build; it only needs to send a body and read a small response.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::target::Endpoint;

/// Every request must complete within this time; a stuck server must not
/// hang the bench.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Publisher {
    ep: Endpoint,
    conn: Option<TcpStream>,
    buf: Vec<u8>,
    req: Vec<u8>,
    content_type: &'static str,
    /// Extra header lines (each ending in CRLF).
    extra: &'static str,
}

impl Publisher {
    pub fn new(ep: Endpoint) -> Self {
        Self {
            ep,
            conn: None,
            buf: Vec::with_capacity(4096),
            req: Vec::with_capacity(1024),
            content_type: "text/plain",
            extra: "",
        }
    }

    /// Bodies are JSON (`application/json`: Pusher's API refuses others with 415).
    pub fn json(mut self) -> Self {
        self.content_type = "application/json";
        self
    }

    /// Every request carries `Prefer: respond-async` (RFC 7240) if `on`.
    pub fn respond_async(mut self, on: bool) -> Self {
        self.extra = if on { "Prefer: respond-async\r\n" } else { "" };
        self
    }

    /// POST `body` to `path` (the endpoint's own path if None); returns the
    /// HTTP status. Reconnects once if a kept-alive connection went stale.
    pub async fn post(&mut self, path: Option<&str>, body: &[u8]) -> Result<u16> {
        let reused = self.conn.is_some();
        match tokio::time::timeout(REQUEST_TIMEOUT, self.post_once(path, body)).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(e)) if reused => {
                // The server may close an idle keep-alive connection; that
                // is not an error of the request, so retry on a fresh one.
                self.conn = None;
                let _ = e;
                tokio::time::timeout(REQUEST_TIMEOUT, self.post_once(path, body))
                    .await
                    .context("publish request timed out")?
            }
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                bail!("publish request timed out")
            }
        }
    }

    /// Open the keep-alive connection now, so that connecting is not part
    /// of a measured publish phase.
    pub async fn connect(&mut self) -> Result<()> {
        if self.conn.is_none() {
            let s = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(self.ep.addr))
                .await
                .context("connect timed out")?
                .with_context(|| format!("connecting to {}", self.ep.addr))?;
            s.set_nodelay(true)?;
            self.conn = Some(s);
            self.buf.clear();
        }
        Ok(())
    }

    /// Send `n` POSTs back to back (HTTP/1.1 pipelining): up to `window`
    /// requests go out before their responses are read, so a burst is not
    /// paced by one round trip per publication while the server is busy
    /// fanning out the previous ones. `make(i)` gives request i's path
    /// (None: the endpoint's) and body, built just before it is written;
    /// `done(i, status)` is called as responses arrive, in order. On error
    /// the requests without a response are left undecided: they may or may
    /// not have been published, so they are not retried.
    pub async fn post_pipelined(
        &mut self,
        n: usize,
        window: usize,
        mut make: impl FnMut(usize) -> (Option<String>, Vec<u8>),
        mut done: impl FnMut(usize, u16),
    ) -> Result<()> {
        let window = window.max(1);
        self.connect().await?;
        let (mut sent, mut answered) = (0, 0);
        while answered < n {
            if sent < n && sent - answered < window {
                self.req.clear();
                while sent < n && sent - answered < window {
                    let (path, body) = make(sent);
                    self.push_request(path.as_deref(), &body);
                    sent += 1;
                }
                let conn = self.conn.as_mut().context("connection closed")?;
                tokio::time::timeout(REQUEST_TIMEOUT, conn.write_all(&self.req))
                    .await
                    .context("publish write timed out")??;
            }
            let (status, close) = tokio::time::timeout(REQUEST_TIMEOUT, self.read_response())
                .await
                .context("publish response timed out")??;
            done(answered, status);
            answered += 1;
            if close && answered < n {
                self.conn = None;
                if sent > answered {
                    bail!(
                        "server closed the publish connection after {answered} pipelined requests"
                    );
                }
                // Nothing outstanding (a server that closes after each
                // response, as sockudo's API does): go on on a new connection.
                self.connect().await?;
            }
        }
        Ok(())
    }

    async fn post_once(&mut self, path: Option<&str>, body: &[u8]) -> Result<u16> {
        self.connect().await?;
        self.req.clear();
        self.push_request(path, body);
        let conn = self.conn.as_mut().expect("connected above");
        conn.write_all(&self.req).await?;
        Ok(self.read_response().await?.0)
    }

    /// Append one request to `self.req`.
    fn push_request(&mut self, path: Option<&str>, body: &[u8]) {
        let path = path.unwrap_or(&self.ep.path);
        self.req.extend_from_slice(
            format!(
                "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n",
                self.ep.host,
                self.content_type,
                body.len(),
                self.extra
            )
            .as_bytes(),
        );
        self.req.extend_from_slice(body);
    }

    /// Read the next response: (status, connection closes after it).
    async fn read_response(&mut self) -> Result<(u16, bool)> {
        loop {
            if let Some((status, consumed, close)) = parse_response(&self.buf)? {
                self.buf.drain(..consumed);
                if close {
                    self.conn = None;
                }
                return Ok((status, close));
            }
            if self.buf.len() > 1 << 20 {
                bail!("publish response too large");
            }
            let conn = self.conn.as_mut().context("connection closed")?;
            if conn.read_buf(&mut self.buf).await? == 0 {
                self.conn = None;
                bail!("server closed the publish connection");
            }
        }
    }
}

/// Parse one complete response from `buf`: `(status, bytes consumed,
/// connection closes)`, or None if incomplete. Handles Content-Length and
/// chunked bodies; a body delimited by close is not supported.
fn parse_response(buf: &[u8]) -> Result<Option<(u16, usize, bool)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.unwrap_or(0);
    let mut content_length = 0usize;
    let mut chunked = false;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        let v = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = v.parse().context("bad Content-Length")?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.eq_ignore_ascii_case("chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        }
    }
    if chunked {
        let mut pos = head;
        loop {
            let Some(eol) = find_crlf(&buf[pos..]) else {
                return Ok(None);
            };
            let size_str = std::str::from_utf8(&buf[pos..pos + eol])?;
            let size_hex = size_str.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16).context("bad chunk size")?;
            pos += eol + 2;
            if size == 0 {
                // Trailers (none expected) end with an empty line.
                let Some(end) = find_crlf(&buf[pos..]) else {
                    return Ok(None);
                };
                return Ok(Some((status, pos + end + 2, close)));
            }
            if buf.len() < pos + size + 2 {
                return Ok(None);
            }
            pos += size + 2;
        }
    }
    if buf.len() < head + content_length {
        return Ok(None);
    }
    Ok(Some((status, head + content_length, close)))
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_response() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1";
        assert_eq!(parse_response(r).unwrap(), Some((200, r.len() - 8, false)));
        assert_eq!(parse_response(&r[..20]).unwrap(), None);
        assert_eq!(parse_response(&r[..40]).unwrap(), None);
    }

    #[test]
    fn chunked_response_and_close() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), Some((200, r.len(), true)));
        assert_eq!(parse_response(&r[..r.len() - 1]).unwrap(), None);
    }

    #[test]
    fn no_body_response() {
        let r = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), Some((429, r.len(), false)));
    }
}
