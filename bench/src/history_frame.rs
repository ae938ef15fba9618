//! pushgate's history messages as the recovery client reads them
//! (docs/protocol.md, "History positions and recovery"): publications with an
//! offset, and the `subscribed` reply with positions and the recovered /
//! unrecovered lists.
//!
//! A publication is parsed without a JSON parser (a million of them arrive in
//! a few seconds, on the cores the server uses): the gateway writes
//! `{"type":"pub","channel":"C","offset":N,"data":"…"}` with the members in that
//! order. Everything else is rare and goes through serde_json.

use std::collections::HashMap;

use serde::Deserialize;

use crate::payload;

/// A channel's position: the stream's epoch and an offset in it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Position {
    pub epoch: String,
    pub offset: u64,
}

/// The `subscribed` reply.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Subscribed {
    #[serde(default)]
    pub positions: HashMap<String, Position>,
    #[serde(default)]
    pub recovered: Vec<String>,
    #[serde(default)]
    pub unrecovered: Vec<String>,
}

#[derive(Debug)]
pub enum Msg {
    /// A publication: its offset (None on a channel without history) and
    /// the bench payload's sequence number (None if it has none).
    Pub {
        offset: Option<u64>,
        seq: Option<u64>,
    },
    Subscribed(Subscribed),
    /// `error` or `unrecoverable`: the message, for the report.
    Problem(String),
    /// The `connected` hello and anything else.
    Other,
}

const PUB_PREFIX: &[u8] = br#"{"type":"pub","#;
const OFFSET_KEY: &[u8] = br#""offset":"#;

/// Classify one text message. `hint` is the payload marker's offset in the
/// previous publication (see [`payload::for_each`]).
pub fn classify(msg: &[u8], hint: &mut usize) -> Msg {
    if msg.starts_with(PUB_PREFIX) {
        let mut seq = None;
        payload::for_each(msg, 0, hint, |s, _| {
            seq = seq.or(Some(s));
        });
        return Msg::Pub {
            offset: offset_of(msg),
            seq,
        };
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(msg) else {
        return Msg::Problem(format!("not JSON: {}", String::from_utf8_lossy(msg)));
    };
    match v.get("type").and_then(|t| t.as_str()) {
        Some("subscribed") => match serde_json::from_value(v) {
            Ok(s) => Msg::Subscribed(s),
            Err(e) => Msg::Problem(format!("bad subscribed reply: {e}")),
        },
        Some("error" | "unrecoverable") => Msg::Problem(v.to_string()),
        _ => Msg::Other,
    }
}

/// The `"offset":N` member of a publication, before its data (so a payload
/// that happens to contain the key is never read as the offset).
fn offset_of(msg: &[u8]) -> Option<u64> {
    let data = find(msg, br#""data":"#).unwrap_or(msg.len());
    let at = find(&msg[..data], OFFSET_KEY)? + OFFSET_KEY.len();
    let digits = msg[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&msg[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The subscribe message: `since` resumes `channel` after `since.offset`.
pub fn subscribe_json(channel: &str, since: Option<&Position>, id: u64) -> String {
    let mut v = serde_json::json!({"type": "subscribe", "channels": [channel], "id": id});
    if let Some(p) = since {
        v["since"] = serde_json::json!({ channel: {"epoch": p.epoch, "offset": p.offset} });
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publication_with_offset_and_payload() {
        let p = payload::encode(7, 99, 100);
        let msg = [
            br#"{"type":"pub","channel":"recovery","offset":42,"data":""#.as_slice(),
            &p,
            b"\"}",
        ]
        .concat();
        let mut hint = 0;
        match classify(&msg, &mut hint) {
            Msg::Pub { offset, seq } => assert_eq!((offset, seq), (Some(42), Some(7))),
            m => panic!("{m:?}"),
        }
        // Without history: no offset.
        let msg = br#"{"type":"pub","channel":"c","data":"x \"offset\":5"}"#;
        match classify(msg, &mut hint) {
            Msg::Pub { offset, seq } => assert_eq!((offset, seq), (None, None)),
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn subscribed_reply_and_problems() {
        let mut hint = 0;
        let r = br#"{"type":"subscribed","channels":["a"],"positions":{"a":{"epoch":"e1","offset":3}},"recovered":["a"],"id":1}"#;
        let Msg::Subscribed(s) = classify(r, &mut hint) else {
            panic!("not a reply")
        };
        assert_eq!(
            s.positions["a"],
            Position {
                epoch: "e1".into(),
                offset: 3
            }
        );
        assert_eq!((s.recovered.len(), s.unrecovered.len()), (1, 0));
        let u = br#"{"type":"unrecoverable","channel":"a","epoch":"e2","offset":9}"#;
        assert!(matches!(classify(u, &mut hint), Msg::Problem(_)));
        let c = br#"{"type":"connected","v":1}"#;
        assert!(matches!(classify(c, &mut hint), Msg::Other));
    }

    #[test]
    fn subscribe_with_and_without_since() {
        let p = Position {
            epoch: "e".into(),
            offset: 10,
        };
        let v: serde_json::Value =
            serde_json::from_str(&subscribe_json("ch", Some(&p), 2)).unwrap();
        assert_eq!(v["since"]["ch"]["offset"], 10);
        assert_eq!(v["since"]["ch"]["epoch"], "e");
        let v: serde_json::Value = serde_json::from_str(&subscribe_json("ch", None, 1)).unwrap();
        assert!(v.get("since").is_none());
        assert_eq!(v["channels"][0], "ch");
    }
}
