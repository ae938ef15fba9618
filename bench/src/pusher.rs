//! The Pusher Channels protocol, as the load generator speaks it (`--pusher
//! ID:KEY:SECRET`): clients connect to `/app/KEY`, subscribe to one public
//! channel and count `{"event":"m","channel":"bench","data":"PGB1:…"}` frames
//! (the payload scan finds the marker inside `data`); each publication is one
//! `POST /apps/ID/events`, signed as Pusher's HTTP API asks. Servers: pushgate
//! with a `[[pusher_apps]]` entry, sockudo (`../shared/peers/sockudo`).

use anyhow::{bail, Context, Result};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::conn::contains;
use crate::frame;

/// The channel every bench client subscribes to and every publication goes to.
pub const CHANNEL: &str = "bench";
/// The event name of bench publications.
const EVENT: &str = "m";

/// One Pusher app: `ID:KEY:SECRET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: String,
    pub key: String,
    pub secret: String,
}

impl App {
    pub fn parse(s: &str) -> Result<Self> {
        let mut it = s.splitn(3, ':');
        match (it.next(), it.next(), it.next()) {
            (Some(id), Some(key), Some(secret))
                if !id.is_empty() && !key.is_empty() && !secret.is_empty() =>
            {
                Ok(Self {
                    id: id.into(),
                    key: key.into(),
                    secret: secret.into(),
                })
            }
            _ => bail!("--pusher expects ID:KEY:SECRET, got {s:?}"),
        }
    }

    /// The signed request of one publication: path with its query, and body.
    /// `payload` is the bench payload (plain ASCII, nothing to escape).
    pub fn event(&self, payload: &[u8], timestamp: u64) -> (String, Vec<u8>) {
        let body = format!(
            r#"{{"name":"{EVENT}","channels":["{CHANNEL}"],"data":"{}"}}"#,
            String::from_utf8_lossy(payload)
        )
        .into_bytes();
        let path = format!("/apps/{}/events", self.id);
        let query = format!(
            "auth_key={}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={}",
            self.key,
            hex::encode(Md5::digest(&body))
        );
        let signature = self.sign(&format!("POST\n{path}\n{query}"));
        (format!("{path}?{query}&auth_signature={signature}"), body)
    }

    /// Hex HMAC-SHA256 of `text` with the app's secret.
    fn sign(&self, text: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.secret.as_bytes()).expect("any key length");
        mac.update(text.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// After the WebSocket handshake: wait for `pusher:connection_established`,
/// subscribe to [`CHANNEL`] and wait for `pusher_internal:subscription_succeeded`,
/// so that the worker reports ready only once the subscription is in place.
/// Frames read past it stay in `pending` for the receive loop.
pub async fn subscribe(stream: &mut TcpStream, pending: &mut Vec<u8>, idx: usize) -> Result<()> {
    let msg = format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{CHANNEL}"}}}}"#);
    let mut seed = idx as u64 | 1;
    let mut out = Vec::with_capacity(msg.len() + 14);
    let mut sent = false;
    loop {
        let (established, subscribed, used) = scan(pending)?;
        if established && !sent {
            frame::encode_client_frame(
                frame::OP_TEXT,
                msg.as_bytes(),
                frame::mask_key(&mut seed),
                &mut out,
            );
            stream.write_all(&out).await?;
            sent = true;
        }
        if subscribed {
            pending.drain(..used);
            return Ok(());
        }
        if pending.len() > 1 << 20 {
            bail!("no subscription_succeeded within 1 MiB of frames");
        }
        if stream.read_buf(pending).await? == 0 {
            bail!("server closed before confirming the subscription");
        }
    }
}

/// Over the complete frames of `buf`: whether the connection was established,
/// whether the subscription succeeded, and the bytes up to that reply.
fn scan(buf: &[u8]) -> Result<(bool, bool, usize)> {
    let (mut pos, mut established) = (0, false);
    while let Some(h) = frame::parse_header(&buf[pos..])? {
        let end = pos + h.total_len();
        if end > buf.len() {
            break;
        }
        let body = &buf[pos + h.header_len..end];
        pos = end;
        if contains(body, b"pusher:connection_established") {
            established = true;
        } else if contains(body, b"pusher_internal:subscription_succeeded") {
            return Ok((true, true, pos));
        } else if contains(body, b"pusher:error") || contains(body, b"subscription_error") {
            bail!("refused: {}", String::from_utf8_lossy(body));
        }
    }
    Ok((established, false, 0))
}

/// A publisher of the API: JSON bodies for Pusher's, as they are.
pub fn publisher(app: Option<&App>, ep: &crate::target::Endpoint) -> crate::publisher::Publisher {
    let p = crate::publisher::Publisher::new(ep.clone());
    if app.is_some() {
        p.json()
    } else {
        p
    }
}

/// The app from `--pusher`, and the publication's request for it.
pub fn request(
    app: Option<&App>,
    path: Option<String>,
    payload: Vec<u8>,
) -> Result<(Option<String>, Vec<u8>)> {
    let Some(app) = app else {
        return Ok((path, payload));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("clock before 1970")?
        .as_secs();
    let (path, body) = app.event(&payload, now);
    Ok((Some(path), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pusher's documented example (pusher.com/docs/channels/library_auth_reference/rest-api).
    #[test]
    fn signs_like_pushers_reference_example() {
        let app = App {
            id: "3".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
        };
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let query = format!(
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5={}",
            hex::encode(Md5::digest(body.as_bytes()))
        );
        assert!(query.ends_with("body_md5=ec365a775a4cd0599faeb73354201b6f"));
        assert_eq!(
            app.sign(&format!("POST\n/apps/3/events\n{query}")),
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }

    #[test]
    fn builds_a_signed_event_and_parses_apps() {
        let app = App::parse("bench:bench-key:bench-secret").unwrap();
        let (path, body) = app.event(b"PGB1:0000000001:x", 1_700_000_000);
        assert!(path.starts_with(
            "/apps/bench/events?auth_key=bench-key&auth_timestamp=1700000000&auth_version=1.0&body_md5="
        ));
        assert!(path.contains("&auth_signature="));
        assert_eq!(
            body,
            br#"{"name":"m","channels":["bench"],"data":"PGB1:0000000001:x"}"#
        );
        assert!(App::parse("a:b").is_err());
        assert!(App::parse("a::c").is_err());
    }

    #[test]
    fn waits_for_the_subscription_reply() {
        let mut buf = Vec::new();
        let est = br#"{"event":"pusher:connection_established","data":"{}"}"#;
        buf.extend([0x81, est.len() as u8]);
        buf.extend(est);
        assert_eq!(scan(&buf).unwrap(), (true, false, 0));
        let ok = br#"{"event":"pusher_internal:subscription_succeeded","channel":"bench"}"#;
        buf.extend([0x81, ok.len() as u8]);
        buf.extend(ok);
        assert_eq!(scan(&buf).unwrap(), (true, true, buf.len()));
        let err = br#"{"event":"pusher:error","data":{"code":4001}}"#;
        let bad = [&[0x81u8, err.len() as u8][..], err].concat();
        assert!(scan(&bad).is_err());
    }
}
