//! `GET /history?channel=C[&since=N][&limit=L]` on the internal HTTP API: the kept
//! publications of a history channel after offset `since` (the first `limit`, default
//! 100, at most 1000), or without `since` the newest `limit`:
//!
//! ```json
//! {"channel":"chat:1","epoch":"9f…","offset":57,"oldest":8,
//!  "publications":[{"offset":56,"data":"…"},{"offset":57,"binary":true,"data":"<base64>"}]}
//! ```
//!
//! `offset` is the stream's last offset and `oldest` the oldest still kept
//! (`offset + 1` when none is). 400 for a bad query, 404 for a channel without a
//! history rule.

use base64::Engine;
use hyper::StatusCode;
use pushgate_broker::Broker;
use pushgate_hub::history::MAX_READ;
use pushgate_protocol::{validate_channel, Payload, Position};
use serde_json::{json, Value};

use crate::http::{error, json_resp, Resp};
use crate::refusal::Refusal;

/// Publications returned when the request names no `limit`.
const DEFAULT_LIMIT: usize = 100;

/// What a history request asks for.
#[derive(Debug, PartialEq, Eq)]
struct Query {
    channel: String,
    since: Option<u64>,
    limit: usize,
}

fn parse(q: &str) -> Result<Query, String> {
    let (mut channel, mut since, mut limit) = (None, None, DEFAULT_LIMIT);
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        match k.as_ref() {
            "channel" if channel.is_none() => channel = Some(v.into_owned()),
            "channel" => return Err("name one channel".into()),
            "since" => {
                since = Some(
                    v.parse()
                        .map_err(|_| "since must be an offset (an integer ≥ 0)")?,
                )
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_READ).contains(l))
                    .ok_or(format!("limit must be 1 to {MAX_READ}"))?
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    let channel = channel.ok_or("channel is required")?;
    validate_channel(&channel).map_err(|e| format!("channel {channel:?}: {e}"))?;
    Ok(Query {
        channel,
        since,
        limit,
    })
}

pub(crate) async fn history(q: &str, broker: &Broker) -> Resp {
    let q = match parse(q) {
        Ok(q) => q,
        Err(msg) => return error(StatusCode::BAD_REQUEST, &msg),
    };
    match broker.history(&q.channel, q.since, q.limit).await {
        Ok(Some(page)) => json_resp(
            StatusCode::OK,
            json!({
                "channel": q.channel,
                "epoch": page.epoch,
                "offset": page.offset,
                "oldest": page.oldest,
                "publications": page.publications.iter().map(|(o, p)| publication(*o, p)).collect::<Vec<_>>(),
            }),
        ),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            &format!(
                "channel {:?} keeps no history (no [[history]] rule matches it)",
                q.channel
            ),
        ),
        Err(e) => error(Refusal::of_broker(&e).http_status(), &e.to_string()),
    }
}

fn publication(offset: u64, p: &Payload) -> Value {
    match p {
        Payload::Text(t) => json!({"offset": offset, "data": t}),
        Payload::Binary(b) => json!({
            "offset": offset,
            "binary": true,
            "data": base64::engine::general_purpose::STANDARD.encode(b),
        }),
    }
}

/// `{"chat:1":{"epoch":"…","offset":42}}`: positions in a publish reply.
pub(crate) fn positions_json(positions: &[(String, Position)]) -> Value {
    positions
        .iter()
        .map(|(c, p)| (c.clone(), json!({"epoch": p.epoch, "offset": p.offset})))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_history_queries() {
        assert_eq!(
            parse("channel=chat:1&since=5&limit=10"),
            Ok(Query {
                channel: "chat:1".into(),
                since: Some(5),
                limit: 10
            })
        );
        assert_eq!(parse("channel=a").unwrap().limit, DEFAULT_LIMIT);
        for bad in [
            "",
            "since=1",
            "channel=a&channel=b",
            "channel=a%20b",
            "channel=a&since=-1",
            "channel=a&limit=0",
            "channel=a&limit=1001",
            "channel=a&x=1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
