//! `GET /presence?channel=C` on the internal HTTP API: every subscriber of a presence
//! channel, on every node:
//!
//! ```json
//! {"channel":"room:1","clients":[{"conn":"n1-7","user":"alice","info":{"name":"A"}}],
//!  "users":1,"clients_count":1}
//! ```
//!
//! `users` counts distinct users (connections without one are not counted). 400 for a
//! bad query, 404 for a channel without a presence rule, 503 when the cluster cannot
//! be read.

use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::{Response, StatusCode};
use pushgate_broker::Broker;
use pushgate_hub::PresenceError;
use pushgate_protocol::presence::presence_json;
use pushgate_protocol::validate_channel;

use crate::http::{error, Resp};

fn parse(q: &str) -> Result<String, String> {
    let mut channel = None;
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        match k.as_ref() {
            "channel" if channel.is_none() => channel = Some(v.into_owned()),
            "channel" => return Err("name one channel".into()),
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    let channel = channel.ok_or("channel is required")?;
    validate_channel(&channel).map_err(|e| format!("channel {channel:?}: {e}"))?;
    Ok(channel)
}

pub(crate) async fn presence(q: &str, broker: &Broker) -> Resp {
    let channel = match parse(q) {
        Ok(c) => c,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    match broker.presence(&channel).await {
        Ok(clients) => Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(presence_json(&channel, &clients, None).into()))
            .expect("static response parts are valid"),
        Err(e @ PresenceError::NoRule(_)) => error(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_valid_channel_and_nothing_else() {
        assert_eq!(parse("channel=room:1"), Ok("room:1".into()));
        for bad in ["", "channel=a&channel=b", "channel=a%20b", "channel=a&x=1"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
