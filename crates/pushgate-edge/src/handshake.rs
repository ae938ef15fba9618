//! The HTTP/1.1 upgrade handshake (RFC 6455 §4.2), written out by hand.
//!
//! Doing it ourselves, instead of through hyper, means no HTTP connection task and no
//! read buffer stay alive after the upgrade, and bytes of the first frame that arrive
//! with the request are simply handed to the frame reader.

use base64::Engine;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Largest request head accepted (request line + headers).
pub const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 48;
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The parts of an upgrade request that pushgate looks at.
#[derive(Debug, Clone, Default)]
pub struct UpgradeRequest {
    pub path: String,
    pub query: Option<String>,
    /// Header names lower-cased; values as sent (lossy UTF-8).
    pub headers: Vec<(String, String)>,
}

impl UpgradeRequest {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a query parameter (not percent-decoded).
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    fn has_token(&self, header: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == header)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// A request refused before the upgrade, answered with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(status: u16, message: impl Into<String>) -> Refusal {
        let reason = match status {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            505 => "HTTP Version Not Supported",
            _ => "Error",
        };
        Refusal {
            status,
            reason,
            message: message.into(),
        }
    }
}

/// The outcome of parsing the bytes read so far.
#[derive(Debug)]
pub enum Parsed {
    Partial,
    /// The request and the length of its head (bytes after it belong to the WebSocket).
    Complete(UpgradeRequest, String, usize),
}

/// Parses a request head and checks it is a WebSocket upgrade for `path`.
/// On success also returns the `Sec-WebSocket-Key`. (Public for the fuzz target.)
pub fn parse(buf: &[u8], ws_path: &str) -> Result<Parsed, Refusal> {
    parse_for(buf, ws_path, |_| false)
}

/// [`parse`], also accepting the paths `other` says are served (a second protocol's).
pub fn parse_for(
    buf: &[u8],
    ws_path: &str,
    other: impl Fn(&str) -> bool,
) -> Result<Parsed, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(Refusal::new(431, "request head too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::new(431, "too many headers")),
        Err(e) => return Err(Refusal::new(400, format!("malformed request: {e}"))),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    let up = UpgradeRequest {
        path: path.to_owned(),
        query,
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
    };
    if up.path != ws_path && !other(&up.path) {
        return Err(Refusal::new(
            404,
            format!("no WebSocket endpoint at {}; use {ws_path}", up.path),
        ));
    }
    if req.method != Some("GET") {
        return Err(Refusal::new(405, "WebSocket upgrades use GET"));
    }
    // RFC 6455 §4.1: the upgrade is an HTTP/1.1 (or later) request.
    if req.version != Some(1) {
        return Err(Refusal::new(505, "WebSocket upgrades need HTTP/1.1"));
    }
    if !up.has_token("upgrade", "websocket") || !up.has_token("connection", "upgrade") {
        return Err(Refusal::new(426, "this endpoint only speaks WebSocket"));
    }
    if up.header("sec-websocket-version") != Some("13") {
        return Err(Refusal::new(
            426,
            "unsupported Sec-WebSocket-Version; use 13",
        ));
    }
    let key = match up.header("sec-websocket-key") {
        Some(k)
            if base64::engine::general_purpose::STANDARD
                .decode(k.trim())
                .is_ok_and(|d| d.len() == 16) =>
        {
            k.trim().to_owned()
        }
        _ => return Err(Refusal::new(400, "missing or malformed Sec-WebSocket-Key")),
    };
    Ok(Parsed::Complete(up, key, n))
}

/// `Sec-WebSocket-Accept` for a key.
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// Writes the 101 response, echoing `pushgate.v1` if the client offered it (only that:
/// a token offered as a second subprotocol is never echoed) and the agreed
/// `Sec-WebSocket-Extensions` if any, followed by `first_frame` in the same write.
pub(crate) async fn write_switching(
    stream: &mut TcpStream,
    key: &str,
    req: &UpgradeRequest,
    extensions: Option<&str>,
    first_frame: &[u8],
) -> std::io::Result<()> {
    let offered = req.has_token("sec-websocket-protocol", pushgate_protocol::SUBPROTOCOL);
    let mut resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if offered {
        resp.push_str("Sec-WebSocket-Protocol: ");
        resp.push_str(pushgate_protocol::SUBPROTOCOL);
        resp.push_str("\r\n");
    }
    if let Some(ext) = extensions {
        resp.push_str("Sec-WebSocket-Extensions: ");
        resp.push_str(ext);
        resp.push_str("\r\n");
    }
    resp.push_str("\r\n");
    let mut bytes = resp.into_bytes();
    bytes.extend_from_slice(first_frame);
    stream.write_all(&bytes).await
}

/// Answers a refused request with its status and a one-line text body, then closes.
pub(crate) async fn write_refusal(stream: &mut TcpStream, r: &Refusal) {
    let mut extra = String::new();
    if r.status == 426 {
        extra.push_str("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
    }
    if r.status == 401 {
        extra.push_str("WWW-Authenticate: Bearer\r\n");
    }
    if r.status == 503 {
        extra.push_str("Retry-After: 5\r\n");
    }
    let body = format!("{}\n", r.message);
    let resp = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        r.status,
        r.reason,
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "GET /ws?token=abc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parses_a_valid_upgrade_and_reports_head_length() {
        let mut bytes = OK.as_bytes().to_vec();
        bytes.extend_from_slice(&[0x81, 0x80]);
        match parse(&bytes, "/ws") {
            Ok(Parsed::Complete(req, key, n)) => {
                assert_eq!(n, OK.len());
                assert_eq!(key, "dGhlIHNhbXBsZSBub25jZQ==");
                assert_eq!(req.query_param("token"), Some("abc"));
                assert_eq!(req.header("host"), Some("x"));
            }
            _ => panic!("expected a complete request"),
        }
        assert!(matches!(parse(&bytes[..20], "/ws"), Ok(Parsed::Partial)));
    }

    #[test]
    fn refuses_with_the_right_status() {
        let status = |s: &str| match parse(s.as_bytes(), "/ws") {
            Err(r) => r.status,
            Ok(_) => 0,
        };
        assert_eq!(status("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"), 426);
        assert_eq!(status(&OK.replace("/ws?token=abc", "/other")), 404);
        assert_eq!(status(&OK.replace("GET", "POST")), 405);
        assert_eq!(status(&OK.replace("HTTP/1.1", "HTTP/1.0")), 505);
        assert_eq!(status(&OK.replace("Version: 13", "Version: 8")), 426);
        assert_eq!(
            status(&OK.replace("dGhlIHNhbXBsZSBub25jZQ==", "short")),
            400
        );
        assert_eq!(status("\x16\x03\x01garbage\r\n\r\n"), 400);
    }
}
