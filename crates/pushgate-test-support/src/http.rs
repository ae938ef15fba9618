//! One HTTP/1.1 request per connection, blocking, for the internal API.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An answer: status, header block (lower-case names as the gateway sends them), body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Response {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One request on a fresh connection; `None` if the connection failed.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<Response> {
    request_with(addr, method, path, &[], body)
}

/// [`request`] with extra headers (`Name: value`).
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Option<Response> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let headers = head.split_once("\r\n").map_or("", |(_, h)| h);
    Some(Response {
        status,
        headers: headers.replace("\r\n", "\n"),
        body: body.to_owned(),
    })
}

/// [`request`], as (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    request(addr, method, path, body).map(|r| (r.status, r.body))
}

/// [`request_with`], as (status, body).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Option<(u16, String)> {
    request_with(addr, method, path, headers, body).map(|r| (r.status, r.body))
}
