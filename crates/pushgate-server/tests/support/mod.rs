//! Test support: a real gateway on 127.0.0.1:0 and independent clients
//! (tokio-tungstenite for well-behaved clients, raw sockets for misbehaving ones).
#![allow(dead_code)]

pub mod sse;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use pushgate_server::{Config, Gateway};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Upper bound on any single wait in these tests; a hang fails instead of blocking CI.
pub const WAIT: Duration = Duration::from_secs(10);

/// A test configuration: ephemeral ports, two unpinned shards, user header trusted.
pub fn config() -> Config {
    Config {
        ws_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        shards: 2,
        pin_shards: false,
        trusted_user_header: "x-pushgate-user".into(),
        drain_window_ms: 0,
        shutdown_grace_ms: 2_000,
        close_timeout_ms: 500,
        ..Config::default()
    }
}

pub async fn start(config: Config) -> Gateway {
    Gateway::start(config).await.expect("gateway starts")
}

/// A connected client and the id the gateway gave it.
pub struct Client {
    pub ws: Ws,
    pub id: String,
}

pub async fn connect(gw: &Gateway) -> Client {
    connect_as(gw, None).await
}

/// Connects (optionally as a user, via the trusted header) and reads the `connected` message.
pub async fn connect_as(gw: &Gateway, user: Option<&str>) -> Client {
    let mut req = format!("ws://{}/ws", gw.ws_addr())
        .into_client_request()
        .unwrap();
    if let Some(u) = user {
        req.headers_mut()
            .insert("x-pushgate-user", u.parse().unwrap());
    }
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect in time")
        .expect("upgrade succeeds");
    let hello = next_json(&mut ws).await.expect("connected message");
    assert_eq!(hello["type"], "connected", "{hello}");
    assert_eq!(hello["v"], 1);
    let id = hello["conn"].as_str().unwrap().to_owned();
    Client { ws, id }
}

/// The next text message as JSON (pings are answered by tungstenite itself).
pub async fn next_json(ws: &mut Ws) -> Result<Value> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .context("timed out waiting for a message")?;
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t)?),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => bail!("expected a text message, got {other:?}"),
        }
    }
}

/// The next message of any kind (skipping pings).
pub async fn next_msg(ws: &mut Ws) -> Result<Message> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .context("timed out waiting for a message")?;
        match msg {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(m) => return Ok(m?),
            None => bail!("stream ended"),
        }
    }
}

pub async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Subscribes and waits for the confirmation.
pub async fn subscribe(c: &mut Client, channels: &[&str]) {
    send_json(
        &mut c.ws,
        serde_json::json!({"type": "subscribe", "channels": channels, "id": 1}),
    )
    .await;
    let r = next_json(&mut c.ws).await.unwrap();
    assert_eq!(r["type"], "subscribed", "{r}");
}

/// A minimal HTTP/1.1 request to the internal API; returns (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> (u16, String) {
    http_with(addr, method, path_and_query, "", body).await
}

/// [`http`] with extra header lines (each ending in `\r\n`).
pub async fn http_with(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    headers: &str,
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut resp))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Publishes through `POST /publish?<query>` and returns the JSON answer.
pub async fn publish(gw: &Gateway, query: &str, body: &str) -> Value {
    let (status, text) = http(
        gw.http_addr(),
        "POST",
        &format!("/publish?{query}"),
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "publish {query}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Asserts that the next publication a client gets is `data` (on `channel`, if given).
pub async fn expect_pub(ws: &mut Ws, channel: Option<&str>, data: &str) {
    let m = next_json(ws).await.unwrap();
    assert_eq!(m["type"], "pub", "{m}");
    assert_eq!(m["data"], data, "{m}");
    match channel {
        Some(ch) => assert_eq!(m["channel"], ch, "{m}"),
        None => assert!(m.get("channel").is_none(), "{m}"),
    }
}

/// Proves a client received nothing before a sentinel broadcast: publishes `marker`
/// to all and checks that it is the very next message.
pub async fn expect_nothing_before(gw: &Gateway, clients: &mut [&mut Client], marker: &str) {
    publish(gw, "all=true", marker).await;
    for c in clients.iter_mut() {
        expect_pub(&mut c.ws, None, marker).await;
    }
}

/// Waits (bounded) until the hub's counts satisfy `pred`.
pub async fn wait_for_stats(gw: &Gateway, what: &str, pred: impl Fn(&pushgate_hub::Stats) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = gw.hub().stats();
        if pred(&s) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}; stats: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A raw socket that completes the WebSocket handshake and then does only what the
/// test makes it do (stays silent, never reads, sends bad frames).
pub async fn raw_upgrade(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(WAIT, s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A masked, final client frame.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    client_fragment(true, opcode, payload)
}

/// A masked client frame, final or not (a fragment of a message).
pub fn client_fragment(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    pushgate_test_support::client_frame(fin, opcode, payload)
}

/// Reads raw server frames until a close frame; returns its code. Pings are skipped.
pub async fn read_until_close(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Parse complete frames at the front.
        while buf.len() >= 2 {
            let len = (buf[1] & 0x7f) as usize;
            let (len, hdr) = match len {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n, 2),
            };
            if buf.len() < hdr + len {
                break;
            }
            if buf[0] & 0x0f == 0x8 {
                return (len >= 2).then(|| u16::from_be_bytes([buf[hdr], buf[hdr + 1]]));
            }
            buf.drain(..hdr + len);
        }
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("close in time")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Tries an upgrade with a prepared request: the client and the 101 response, or the
/// HTTP status of the refusal (0 if the connection failed without a response).
pub async fn try_connect(
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<(Client, Value), u16> {
    use tokio_tungstenite::tungstenite::Error;
    let r = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect in time");
    match r {
        Ok((mut ws, _)) => {
            let hello = next_json(&mut ws).await.expect("connected message");
            assert_eq!(hello["type"], "connected", "{hello}");
            let id = hello["conn"].as_str().unwrap().to_owned();
            Ok((Client { ws, id }, hello))
        }
        Err(Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(_) => Err(0),
    }
}

/// A client request for the gateway's WebSocket path with `query` appended.
pub fn ws_request(
    gw: &Gateway,
    query: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    format!("ws://{}/ws{query}", gw.ws_addr())
        .into_client_request()
        .unwrap()
}

/// The value of a counter in `/metrics` (summed over its label sets that contain `labels`).
pub async fn metric(gw: &Gateway, name: &str, labels: &str) -> f64 {
    let (_, text) = http(gw.http_addr(), "GET", "/metrics", b"").await;
    pushgate_test_support::metrics::sum(&text, name, labels)
}

/// Waits (bounded) until a metric reaches `at_least`: for what is counted after the
/// event a test caused, such as a connection's close once its task has ended.
pub async fn wait_for_metric(gw: &Gateway, name: &str, labels: &str, at_least: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = metric(gw, name, labels).await;
        if v >= at_least {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {name}{{{labels}}} >= {at_least}: {v}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
