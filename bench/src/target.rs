//! Target addresses: `ws://host:port/path` and `http://host:port/path?query`.
//!
//! Only loopback targets are accepted: this tool generates heavy load and
//! must never be pointed at another machine.

use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// Value for the Host header, as written in the URL.
    pub host: String,
    /// Path plus query, e.g. `/publish?all=true`.
    pub path: String,
    /// A client endpoint given as `http://…/sse`: pushgate's Server-Sent Events
    /// stream instead of a WebSocket.
    pub sse: bool,
}

impl Endpoint {
    pub fn parse(url: &str, scheme: &str) -> Result<Self> {
        let rest = url
            .strip_prefix(scheme)
            .and_then(|r| r.strip_prefix("://"))
            .with_context(|| format!("URL {url:?} must start with {scheme}://"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = host
            .to_socket_addrs()
            .with_context(|| format!("resolving {host:?} (host:port expected)"))?
            .next()
            .with_context(|| format!("{host:?} resolved to nothing"))?;
        if !addr.ip().is_loopback() {
            bail!("refusing non-loopback target {addr}: load is for this machine only");
        }
        Ok(Self {
            addr,
            host: host.to_string(),
            path: path.to_string(),
            sse: false,
        })
    }

    /// Where clients connect: `ws://…` (WebSocket) or `http://…` (an SSE stream).
    pub fn parse_client(url: &str) -> Result<Self> {
        if url.starts_with("http://") {
            return Ok(Self {
                sse: true,
                ..Self::parse(url, "http")?
            });
        }
        Self::parse(url, "ws")
    }

    /// Path without its query string (`/publish?all=true` → `/publish`).
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_loopback() {
        let e = Endpoint::parse("http://127.0.0.1:8080/publish?all=true", "http").unwrap();
        assert_eq!(e.addr.port(), 8080);
        assert_eq!(e.path, "/publish?all=true");
        assert_eq!(e.path_only(), "/publish");
        assert_eq!(e.host, "127.0.0.1:8080");
        let w = Endpoint::parse("ws://127.0.0.1:9/ws", "ws").unwrap();
        assert_eq!(w.path, "/ws");
        assert!(Endpoint::parse("ws://10.0.0.1:9/ws", "ws").is_err());
        assert!(Endpoint::parse("http://127.0.0.1:9/", "ws").is_err());
        assert!(
            Endpoint::parse_client("http://127.0.0.1:9/sse")
                .unwrap()
                .sse
        );
        assert!(!Endpoint::parse_client("ws://127.0.0.1:9/ws").unwrap().sse);
    }
}
