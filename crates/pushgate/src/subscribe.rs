//! `pushgate subscribe`: a WebSocket client of the gateway, so trying it needs no other
//! tool. It follows channels (`--channel`), connects as a user (`--user`, `--token`) or
//! just listens (`--all`), prints every publication it receives as one line on
//! standard output, and reconnects (re-subscribing) when the connection ends.
//! Everything else (connected, following, reconnecting) goes to standard error.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use base64::Engine;
use clap::{ArgGroup, Args};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// First reconnect delay; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The `id` of our subscribe command, to match its reply.
const SUBSCRIBE_ID: u64 = 1;

/// Flags of `pushgate subscribe`. None is read from the environment: every `PUSHGATE_*`
/// variable names a gateway setting (a node exits 64 on one it does not know).
#[derive(Args)]
#[command(group(ArgGroup::new("who").required(true).multiple(true).args(["all", "channel", "user", "token"])))]
pub struct SubscribeArgs {
    /// Follow nothing: print the publications every connection receives (to all, and
    /// to this connection). Any other flag prints those too.
    #[arg(long)]
    all: bool,
    /// Follow this channel (repeatable).
    #[arg(long, value_name = "NAME")]
    channel: Vec<String>,
    /// Connect as this user, to receive publications to it. Sent in the header
    /// --user-header; the gateway takes it only when its trusted_user_header names that
    /// header (anonymous mode). With auth_mode = "jwt", use --token instead.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// The header that carries --user (the gateway's trusted_user_header).
    #[arg(long, value_name = "NAME", default_value = "x-pushgate-user")]
    user_header: String,
    /// A connection token (JWT), sent as `Authorization: Bearer`.
    #[arg(long, value_name = "JWT")]
    token: Option<String>,
    /// The gateway's WebSocket URL.
    #[arg(long, value_name = "URL", default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Exit after printing this many publications.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

/// Why a connection ended.
enum Ended {
    /// `--count` publications printed.
    Done,
    /// Worth another attempt: the gateway went away, closed us, or is not up yet.
    Retry(anyhow::Error),
    /// Another attempt would end the same way: refused handshake, bad channel, ...
    Fatal(anyhow::Error),
}

/// Runs `pushgate subscribe` until `--count` publications are printed or a fatal error.
pub fn run(args: SubscribeArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut printed = 0;
        let mut backoff = FIRST_BACKOFF;
        loop {
            match session(&args, &mut printed, &mut backoff).await {
                Ended::Done => return Ok(()),
                Ended::Fatal(e) => return Err(e),
                Ended::Retry(e) => {
                    eprintln!("pushgate: {e:#}; reconnecting in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    })
}

/// One connection: connect, check the identity, subscribe, print publications.
async fn session(args: &SubscribeArgs, printed: &mut u64, backoff: &mut Duration) -> Ended {
    let request = match request(args) {
        Ok(r) => r,
        Err(e) => return Ended::Fatal(e),
    };
    let mut ws = match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => ws,
        Err(WsError::Http(r)) => {
            let status = r.status();
            let body = r.body().as_deref().map(String::from_utf8_lossy);
            let e = anyhow!(
                "{} refused the connection: HTTP {status} {}",
                args.url,
                body.unwrap_or_default().trim()
            );
            // 408, 429 and 5xx may pass on a later attempt; other refusals will not.
            let again = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
            return if again {
                Ended::Retry(e)
            } else {
                Ended::Fatal(e)
            };
        }
        Err(e) => return Ended::Retry(anyhow!("cannot connect to {}: {e}", args.url)),
    };
    // The first message says who we are and how often the gateway pings.
    let mut silence = Duration::from_secs(60);
    let mut pending_subscribe = !args.channel.is_empty();
    loop {
        let msg = match tokio::time::timeout(silence, ws.next()).await {
            Err(_) => {
                return Ended::Retry(anyhow!("nothing from the gateway for {silence:?}"));
            }
            Ok(None) => return Ended::Retry(anyhow!("the gateway closed the connection")),
            Ok(Some(Err(e))) => return Ended::Retry(anyhow!("connection lost: {e}")),
            Ok(Some(Ok(m))) => m,
        };
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(b) => {
                println!("{}", binary_line(&b));
                if done(args, printed) {
                    let _ = ws.close(None).await;
                    return Ended::Done;
                }
                continue;
            }
            Message::Close(frame) => {
                let why = frame.map_or("no close code".to_owned(), |f| {
                    format!("close {} {}", u16::from(f.code), f.reason)
                });
                return Ended::Retry(anyhow!("the gateway closed the connection ({why})"));
            }
            // Pings are answered by the library.
            _ => continue,
        };
        let v: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(_) => {
                eprintln!("pushgate: not JSON, ignored: {text}");
                continue;
            }
        };
        match v["type"].as_str().unwrap_or_default() {
            "pub" => {
                println!("{text}");
                if done(args, printed) {
                    let _ = ws.close(None).await;
                    return Ended::Done;
                }
            }
            "connected" => {
                if let Some(ms) = v["heartbeat_ms"].as_u64() {
                    // Two heartbeats without a ping: the gateway is gone.
                    silence = Duration::from_millis(ms.saturating_mul(2).max(1000));
                }
                let conn = v["conn"].as_str().unwrap_or("?");
                let user = v["user"].as_str();
                if let Some(want) = &args.user {
                    if user != Some(want.as_str()) {
                        return Ended::Fatal(anyhow!(
                            "the gateway did not take the user from the {} header: set \
                             trusted_user_header = \"{}\" on the gateway (anonymous mode), \
                             or pass --token",
                            args.user_header,
                            args.user_header
                        ));
                    }
                }
                match user {
                    Some(u) => eprintln!("pushgate: connected as {conn} (user {u})"),
                    None => eprintln!("pushgate: connected as {conn}"),
                }
                if pending_subscribe {
                    let cmd =
                        json!({"type": "subscribe", "channels": args.channel, "id": SUBSCRIBE_ID});
                    if let Err(e) = ws.send(Message::text(cmd.to_string())).await {
                        return Ended::Retry(anyhow!("connection lost: {e}"));
                    }
                } else {
                    *backoff = FIRST_BACKOFF;
                }
            }
            "subscribed" if v["id"] == SUBSCRIBE_ID => {
                pending_subscribe = false;
                *backoff = FIRST_BACKOFF;
                eprintln!("pushgate: following {}", args.channel.join(", "));
            }
            "error" => {
                let code = v["code"].as_str().unwrap_or_default();
                let message = v["message"].as_str().unwrap_or_default();
                return Ended::Fatal(anyhow!("the gateway refused: {code}: {message}"));
            }
            "token_expired" => {
                eprintln!("pushgate: the token expired; the gateway will close the connection");
            }
            _ => {}
        }
    }
}

/// The handshake request: the URL, the subprotocol, the token and the user header.
fn request(
    args: &SubscribeArgs,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    let mut req = args
        .url
        .as_str()
        .into_client_request()
        .with_context(|| format!("invalid --url {:?}", args.url))?;
    let headers = req.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("pushgate.v1"),
    );
    if let Some(t) = &args.token {
        let v = HeaderValue::try_from(format!("Bearer {t}")).context("invalid --token")?;
        headers.insert("authorization", v);
    }
    if let Some(u) = &args.user {
        let name =
            tokio_tungstenite::tungstenite::http::HeaderName::try_from(args.user_header.as_str())
                .context("invalid --user-header")?;
        headers.insert(
            name,
            HeaderValue::try_from(u.as_str()).context("invalid --user")?,
        );
    }
    Ok(req)
}

/// Counts one printed publication; whether `--count` is reached.
fn done(args: &SubscribeArgs, printed: &mut u64) -> bool {
    *printed += 1;
    args.count.is_some_and(|n| *printed >= n)
}

/// A binary publication as one JSON line: its channel (a length-prefixed name, empty
/// when none) and the payload in base64.
fn binary_line(frame: &[u8]) -> String {
    let (channel, payload) = match frame.split_first() {
        Some((&len, rest)) if rest.len() >= len as usize => {
            let (c, p) = rest.split_at(len as usize);
            (String::from_utf8_lossy(c), p)
        }
        _ => (Default::default(), frame),
    };
    let data = base64::engine::general_purpose::STANDARD.encode(payload);
    let mut v = json!({"type": "pub", "binary": data});
    if !channel.is_empty() {
        v["channel"] = json!(channel);
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_publications_print_their_channel_and_base64() {
        assert_eq!(
            binary_line(b"\x04news\x00\x01"),
            r#"{"binary":"AAE=","channel":"news","type":"pub"}"#
        );
        assert_eq!(binary_line(b"\x00hi"), r#"{"binary":"aGk=","type":"pub"}"#);
    }
}
