//! The bodies of `POST /apps/{id}/events` and `/batch_events`, checked with Pusher's
//! limits before anything is published: a batch is published whole or not at all.

use serde::Deserialize;
use serde_json::Value;

use super::backend::Event;
use super::error::{ApiError, Invalid};
use super::info::Info;
use super::names::{is_encrypted, is_presence, valid_channel, valid_socket_id};

/// Most channels one event names (Pusher's limit).
pub const MAX_CHANNELS: usize = 100;
/// Longest event name (Pusher's limit).
pub const MAX_EVENT_NAME: usize = 200;
/// Most events one batch carries (Pusher's limit).
pub const MAX_BATCH: usize = 10;

/// One event as a request carries it, before it is checked.
#[derive(Debug, Deserialize)]
struct RawEvent {
    name: Option<String>,
    data: Option<Value>,
    channels: Option<Vec<String>>,
    channel: Option<String>,
    socket_id: Option<String>,
    info: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawBatch {
    batch: Vec<RawEvent>,
}

/// A checked event and the channel attributes its answer should carry.
#[derive(Debug, PartialEq, Eq)]
pub struct Trigger {
    pub event: Event,
    pub info: Info,
}

/// The body of `POST /events`; `max_data` bounds `data` in bytes.
pub fn parse_trigger(body: &[u8], max_data: usize) -> Result<Trigger, ApiError> {
    check(serde_json::from_slice(body)?, max_data)
}

/// The body of `POST /batch_events`: 1 to 10 events, all checked.
pub fn parse_batch(body: &[u8], max_data: usize) -> Result<Vec<Trigger>, ApiError> {
    let raw: RawBatch = serde_json::from_slice(body)?;
    if raw.batch.is_empty() {
        return Err(Invalid::EmptyBatch.into());
    }
    if raw.batch.len() > MAX_BATCH {
        return Err(Invalid::BatchTooLarge(MAX_BATCH).into());
    }
    raw.batch.into_iter().map(|e| check(e, max_data)).collect()
}

fn check(raw: RawEvent, max_data: usize) -> Result<Trigger, ApiError> {
    let name = raw.name.filter(|n| !n.is_empty()).ok_or(Invalid::NoName)?;
    if name.chars().count() > MAX_EVENT_NAME {
        return Err(Invalid::NameTooLong(MAX_EVENT_NAME).into());
    }
    let data = match raw.data.ok_or(Invalid::NoData)? {
        Value::String(s) => s,
        _ => return Err(Invalid::DataNotString.into()),
    };
    if data.len() > max_data {
        return Err(ApiError::DataTooLarge {
            size: data.len(),
            max: max_data,
        });
    }
    let channels = match (raw.channels, raw.channel) {
        (Some(_), Some(_)) => return Err(Invalid::BothChannelFields.into()),
        (Some(list), None) => list,
        (None, Some(one)) => vec![one],
        (None, None) => return Err(Invalid::NoChannels.into()),
    };
    if channels.is_empty() {
        return Err(Invalid::NoChannels.into());
    }
    if channels.len() > MAX_CHANNELS {
        return Err(Invalid::TooManyChannels(MAX_CHANNELS).into());
    }
    if let Some(bad) = channels.iter().find(|c| !valid_channel(c)) {
        return Err(Invalid::ChannelName(bad.clone()).into());
    }
    if channels.len() > 1 && channels.iter().any(|c| is_encrypted(c)) {
        return Err(Invalid::EncryptedWithOthers.into());
    }
    if let Some(id) = raw.socket_id.as_deref().filter(|id| !valid_socket_id(id)) {
        return Err(Invalid::SocketId(id.into()).into());
    }
    let info = Info::parse(raw.info.as_deref().unwrap_or(""))?;
    if info.user_count && !channels.iter().all(|c| is_presence(c)) {
        return Err(Invalid::UserCountNotPresence.into());
    }
    Ok(Trigger {
        event: Event {
            name,
            data,
            channels,
            socket_id: raw.socket_id,
        },
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(body: &str) -> Invalid {
        match parse_trigger(body.as_bytes(), 100) {
            Err(ApiError::Invalid(i)) => i,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn takes_pusher_documented_body() {
        let t = parse_trigger(
            br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#,
            100,
        )
        .unwrap();
        assert_eq!(t.event.name, "foo");
        assert_eq!(t.event.channels, ["project-3"]);
        assert_eq!(t.event.data, r#"{"some":"data"}"#);
        assert_eq!(t.info, Info::default());
        let t = parse_trigger(
            br#"{"name":"e","channel":"presence-a","data":"x","socket_id":"1.2","info":"user_count"}"#,
            100,
        )
        .unwrap();
        assert_eq!(t.event.channels, ["presence-a"]);
        assert_eq!(t.event.socket_id.as_deref(), Some("1.2"));
        assert!(t.info.user_count && !t.info.subscription_count);
    }

    #[test]
    fn refuses_what_pusher_refuses() {
        assert_eq!(invalid(r#"{"channel":"a","data":"x"}"#), Invalid::NoName);
        assert_eq!(invalid(r#"{"name":"e","channel":"a"}"#), Invalid::NoData);
        assert_eq!(
            invalid(r#"{"name":"e","channel":"a","data":{"x":1}}"#),
            Invalid::DataNotString
        );
        assert_eq!(invalid(r#"{"name":"e","data":"x"}"#), Invalid::NoChannels);
        assert_eq!(
            invalid(r#"{"name":"e","channels":[],"data":"x"}"#),
            Invalid::NoChannels
        );
        assert_eq!(
            invalid(r#"{"name":"e","channel":"a b","data":"x"}"#),
            Invalid::ChannelName("a b".into())
        );
        assert_eq!(
            invalid(r#"{"name":"e","channels":["a","private-encrypted-b"],"data":"x"}"#),
            Invalid::EncryptedWithOthers
        );
        assert_eq!(
            invalid(r#"{"name":"e","channel":"a","data":"x","socket_id":"12"}"#),
            Invalid::SocketId("12".into())
        );
        assert_eq!(
            invalid(r#"{"name":"e","channel":"a","data":"x","info":"user_count"}"#),
            Invalid::UserCountNotPresence
        );
        let many: Vec<String> = (0..=MAX_CHANNELS).map(|i| format!("c{i}")).collect();
        let body = serde_json::json!({"name":"e","channels":many,"data":"x"}).to_string();
        assert_eq!(invalid(&body), Invalid::TooManyChannels(MAX_CHANNELS));
        let long = "n".repeat(MAX_EVENT_NAME + 1);
        let body = serde_json::json!({"name":long,"channel":"a","data":"x"}).to_string();
        assert_eq!(invalid(&body), Invalid::NameTooLong(MAX_EVENT_NAME));
        assert!(matches!(
            parse_trigger(br#"{"name":"e","channel":"a","data":"0123456789"}"#, 9),
            Err(ApiError::DataTooLarge { size: 10, max: 9 })
        ));
        assert!(matches!(
            parse_trigger(b"not json", 9),
            Err(ApiError::Json(_))
        ));
    }

    #[test]
    fn a_batch_is_checked_whole() {
        let one = r#"{"name":"e","channel":"a","data":"x"}"#;
        let ok = format!(r#"{{"batch":[{one},{one}]}}"#);
        assert_eq!(parse_batch(ok.as_bytes(), 9).unwrap().len(), 2);
        let bad = format!(r#"{{"batch":[{one},{{"name":"e","channel":"a b","data":"x"}}]}}"#);
        assert!(matches!(
            parse_batch(bad.as_bytes(), 9),
            Err(ApiError::Invalid(Invalid::ChannelName(_)))
        ));
        let eleven = [one; MAX_BATCH + 1].join(",");
        assert!(matches!(
            parse_batch(format!(r#"{{"batch":[{eleven}]}}"#).as_bytes(), 9),
            Err(ApiError::Invalid(Invalid::BatchTooLarge(MAX_BATCH)))
        ));
        assert!(matches!(
            parse_batch(br#"{"batch":[]}"#, 9),
            Err(ApiError::Invalid(Invalid::EmptyBatch))
        ));
    }
}
