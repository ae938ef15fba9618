//! A minimal Server-Sent Events client over a raw socket, written from the WHATWG
//! event-stream grammar (not from pushgate's code): fields `id`, `event`, `data`
//! (joined by LF), comment lines, events ended by a blank line.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::WAIT;

/// One dispatched event, or a comment-only block (a heartbeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    pub comment: bool,
}

impl Event {
    pub fn data(&self) -> &str {
        self.data.as_deref().unwrap_or("")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.data()).unwrap_or_else(|e| panic!("{self:?}: {e}"))
    }
}

pub struct SseClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pub head: String,
}

/// `GET <target>` on the WebSocket listener with extra header lines (each ending in
/// `\r\n`). `Err((status, body))` when the answer is not a 200 event stream.
pub async fn open(
    addr: SocketAddr,
    target: &str,
    headers: &str,
) -> Result<SseClient, (u16, String)> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n{headers}\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("response head in time")
            .unwrap();
        assert!(
            n > 0,
            "EOF before the response head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    buf.drain(..head_end);
    if status != 200 {
        let mut rest = buf;
        let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
        return Err((status, String::from_utf8_lossy(&rest).into_owned()));
    }
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    Ok(SseClient { stream, buf, head })
}

impl SseClient {
    /// The next event or comment block; `None` at EOF.
    pub async fn next(&mut self) -> Option<Event> {
        let mut ev = Event::default();
        let mut any = false;
        loop {
            while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let line = String::from_utf8(line[..i].to_vec()).expect("UTF-8 stream");
                if line.is_empty() {
                    if any {
                        if let Some(d) = &mut ev.data {
                            d.pop();
                        }
                        return Some(ev);
                    }
                    continue;
                }
                any = true;
                if let Some(_c) = line.strip_prefix(':') {
                    ev.comment = true;
                    continue;
                }
                let (name, value) = match line.split_once(':') {
                    Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line.as_str(), ""),
                };
                match name {
                    "id" => ev.id = Some(value.to_owned()),
                    "event" => ev.event = Some(value.to_owned()),
                    "data" => {
                        // The spec's data buffer: each line plus LF; the last LF is
                        // removed when the event is dispatched.
                        let d = ev.data.get_or_insert_with(String::new);
                        d.push_str(value);
                        d.push('\n');
                    }
                    _ => {}
                }
            }
            let mut chunk = [0u8; 16384];
            let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
                .await
                .expect("an event in time")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next event that is not a heartbeat comment.
    pub async fn event(&mut self) -> Event {
        loop {
            let e = self.next().await.expect("an event before EOF");
            if !(e.comment && e.data.is_none() && e.event.is_none()) {
                return e;
            }
        }
    }
}
