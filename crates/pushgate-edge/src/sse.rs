//! Server-Sent Events on the WebSocket listener: the request (`GET /sse?channel=…`),
//! what it may ask for, and the HTTP answers (the stream's head, CORS, refusals).
//!
//! The stream itself is `sse_stream.rs`; what it writes, `sse_writer.rs`; the event
//! format, `pushgate_protocol::sse`. docs/protocol.md ("Server-Sent Events") is the
//! client's view.

use pushgate_hub::{Grant, SubscribeRequest};
use pushgate_protocol::sse::Cursor;
use pushgate_protocol::validate_channel;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::handshake::{Refusal, UpgradeRequest};

const MAX_HEADERS: usize = 48;

/// A request for the SSE path.
#[derive(Debug)]
pub(crate) enum SseHead {
    /// `GET`: open a stream.
    Open(UpgradeRequest),
    /// `OPTIONS`: a browser's CORS preflight.
    Preflight(UpgradeRequest),
}

/// Parses the request head if it is complete and for `sse_path` (`Ok(None)`
/// otherwise: incomplete, or another path, which the WebSocket handshake answers).
pub(crate) fn parse(buf: &[u8], sse_path: &str) -> Result<Option<SseHead>, Refusal> {
    if sse_path.is_empty() {
        return Ok(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => return Ok(None),
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (target, None),
    };
    if path != sse_path {
        return Ok(None);
    }
    let up = UpgradeRequest {
        path: path.to_owned(),
        query,
        headers: req
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).into_owned();
                (h.name.to_ascii_lowercase(), value)
            })
            .collect(),
    };
    match req.method {
        Some("GET") => Ok(Some(SseHead::Open(up))),
        Some("OPTIONS") => Ok(Some(SseHead::Preflight(up))),
        _ => Err(Refusal::new(405, "event streams use GET")),
    }
}

/// What a stream asks for, from its query and `Last-Event-ID`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) subscribe: SubscribeRequest,
}

impl Wanted {
    /// Reads `channel` (repeatable), `since` and `latest` from the query, and the
    /// `Last-Event-ID` header (which, when present, replaces `since`: it is where a
    /// reconnecting browser was). `token_channels` are the token's `subscribe` claim;
    /// `grant` limits what may be followed; at most `max` channels.
    pub(crate) fn from_request(
        req: &UpgradeRequest,
        token_channels: &[String],
        grant: Option<&Grant>,
        max: usize,
    ) -> Result<Wanted, Refusal> {
        let mut channels: Vec<String> = token_channels.to_vec();
        let mut since = None;
        let mut latest = false;
        let query = req.query.as_deref().unwrap_or("");
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "channel" => {
                    validate_channel(&v)
                        .map_err(|e| Refusal::new(400, format!("channel {v:?}: {e}")))?;
                    if let Some(g) = grant {
                        if !g.permissions.allows(&v) {
                            return Err(Refusal::new(
                                403,
                                format!("channel {v:?} is not allowed by this token"),
                            ));
                        }
                    }
                    if !channels.iter().any(|c| *c == *v) {
                        channels.push(v.into_owned());
                    }
                    if channels.len() > max {
                        return Err(Refusal::new(
                            400,
                            format!("more than {max} channels in one stream"),
                        ));
                    }
                }
                "since" => since = Some(v.into_owned()),
                "latest" => latest = matches!(&*v, "true" | "1"),
                _ => {}
            }
        }
        if let Some(id) = req.header("last-event-id") {
            since = Some(id.to_owned());
        }
        let cursor = match since {
            Some(id) => Cursor::parse(&id, max)
                .map_err(|e| Refusal::new(400, format!("bad Last-Event-ID or since: {e}")))?,
            None => Cursor::default(),
        };
        let since = cursor
            .0
            .into_iter()
            .filter(|(c, _)| channels.contains(c))
            .collect();
        Ok(Wanted {
            subscribe: SubscribeRequest {
                channels,
                since,
                latest,
                // Join/leave events are WebSocket messages; an SSE stream does not ask.
                presence_events: false,
            },
        })
    }
}

/// The CORS headers of an answer to a browser at `origin` (already checked against
/// `allowed_origins`): the origin echoed, with credentials (cookies, for pages that
/// authenticate through a proxy).
fn cors(req: &UpgradeRequest) -> String {
    match req.header("origin") {
        Some(o) if !o.contains(['\r', '\n']) => format!(
            "Access-Control-Allow-Origin: {}\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n",
            o.trim()
        ),
        _ => String::new(),
    }
}

/// The head of an event stream, then `first` (the `#connected` event), in one write.
pub(crate) async fn write_head(
    stream: &mut TcpStream,
    req: &UpgradeRequest,
    first: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-store\r\nX-Accel-Buffering: no\r\nConnection: close\r\n{}\r\n",
        cors(req)
    )
    .into_bytes();
    head.extend_from_slice(first);
    stream.write_all(&head).await
}

/// Answers a CORS preflight (a page that sends `Authorization` or `Last-Event-ID`
/// cross-origin with `fetch`), then closes.
pub(crate) async fn write_preflight(stream: &mut TcpStream, req: &UpgradeRequest) {
    let resp = format!(
        "HTTP/1.1 204 No Content\r\n{}Access-Control-Allow-Methods: GET\r\nAccess-Control-Allow-Headers: Authorization, Last-Event-ID, Cache-Control\r\nAccess-Control-Max-Age: 600\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        cors(req)
    );
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Option<SseHead>, Refusal> {
        parse(s.as_bytes(), "/sse")
    }

    fn wanted(target: &str, last: Option<&str>) -> Result<Wanted, Refusal> {
        let mut text = format!("GET {target} HTTP/1.1\r\nHost: x\r\n");
        if let Some(l) = last {
            text.push_str(&format!("Last-Event-ID: {l}\r\n"));
        }
        text.push_str("\r\n");
        match head(&text)? {
            Some(SseHead::Open(req)) => Wanted::from_request(&req, &[], None, 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_complete_requests_for_the_path_are_taken() {
        assert!(matches!(head("GET /sse HTTP/1.1\r\n"), Ok(None)));
        assert!(matches!(head("GET /ws HTTP/1.1\r\n\r\n"), Ok(None)));
        assert!(matches!(
            head("GET /sse?channel=a HTTP/1.1\r\n\r\n"),
            Ok(Some(SseHead::Open(_)))
        ));
        assert!(matches!(
            head("OPTIONS /sse HTTP/1.1\r\n\r\n"),
            Ok(Some(SseHead::Preflight(_)))
        ));
        assert_eq!(head("POST /sse HTTP/1.1\r\n\r\n").unwrap_err().status, 405);
        assert!(matches!(parse(b"GET /sse HTTP/1.1\r\n\r\n", ""), Ok(None)));
    }

    #[test]
    fn channels_since_and_last_event_id() {
        let w = wanted("/sse?channel=a&channel=b:c&channel=a&since=a:e:3", None).unwrap();
        assert_eq!(w.subscribe.channels, ["a", "b:c"]);
        assert_eq!(w.subscribe.since.len(), 1);
        assert_eq!(w.subscribe.since[0].1.offset, 3);
        // The header wins over the query, and names only followed channels.
        let w = wanted("/sse?channel=a&since=a:e:3", Some("a:e:9,zz:e:1")).unwrap();
        assert_eq!(w.subscribe.since.len(), 1);
        assert_eq!(w.subscribe.since[0].1.offset, 9);
        // Percent-encoded values are decoded.
        let w = wanted("/sse?channel=a&since=a%3Ae%3A4", None).unwrap();
        assert_eq!(w.subscribe.since[0].1.offset, 4);
        assert_eq!(wanted("/sse?channel=a%20b", None).unwrap_err().status, 400);
        assert_eq!(
            wanted("/sse?channel=a&channel=b&channel=c&channel=d", None)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            wanted("/sse?channel=a", Some("nonsense"))
                .unwrap_err()
                .status,
            400
        );
    }
}
