//! The Pusher dialect's readers on arbitrary text: a Pusher client's message
//! (`wire::parse`), a pushgate payload as a Pusher client receives it
//! (`wire::publication`), and channel names and user ids as mapped to pushgate's.
//! Never a panic; a client event crosses the hub in an envelope that reads back the
//! same and reaches Pusher clients as one JSON event with its name, channel and data;
//! a mapped name is a valid pushgate channel or user that maps back; and the mapping
//! keeps prefixes, both ways (docs/pusher.md, `channel::prefix_to_pushgate`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushgate_protocol::{validate_channel, validate_user};
use pushgate_pusher::channel;
use pushgate_pusher::wire::{self, ClientMessage, Envelope, PUSHGATE_EVENT};
use serde_json::Value;

const APPS: [&str; 2] = ["1", "app=id é"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // the frame reader refuses non-UTF-8 text before the dialect sees it
    };
    match wire::parse(text) {
        Ok(ClientMessage::Subscribe { channel, .. })
        | Ok(ClientMessage::Unsubscribe { channel }) => {
            names(&channel, "");
        }
        Ok(ClientMessage::ClientEvent {
            event,
            channel,
            data,
        }) => {
            assert!(event.starts_with("client-"));
            names(&channel, "");
            let envelope = Envelope {
                event: event.as_str().into(),
                data: data.as_str().into(),
                user_id: Some(channel.as_str().into()),
            };
            let payload = envelope.to_payload();
            assert_eq!(Envelope::read(&payload).as_ref(), Some(&envelope));
            let body = body(&wire::publication(Some(&channel), &payload));
            assert_eq!(body["event"].as_str(), Some(event.as_str()));
            assert_eq!(body["channel"].as_str(), Some(channel.as_str()));
            assert_eq!(body["data"].as_str(), Some(data.as_str()));
            assert_eq!(body["user_id"].as_str(), Some(channel.as_str()));
        }
        Ok(_) | Err(_) => {}
    }
    // Any pushgate payload reaches a Pusher client as one JSON event.
    let body = body(&wire::publication(None, text));
    match Envelope::read(text) {
        Some(e) => {
            assert_eq!(body["event"].as_str(), Some(&*e.event));
            assert_eq!(body["data"].as_str(), Some(&*e.data));
        }
        None => {
            assert_eq!(body["event"].as_str(), Some(PUSHGATE_EVENT));
            assert_eq!(body["data"].as_str(), Some(text));
        }
    }
    // The text as a name, and its first line as a prefix of the rest.
    match text.split_once('\n') {
        Some((prefix, name)) => names(name, prefix),
        None => names(text, ""),
    }
});

fn names(name: &str, prefix: &str) {
    for app in APPS {
        if let Ok(mapped) = channel::to_pushgate(app, name) {
            assert_eq!(validate_channel(&mapped), Ok(()), "{mapped:?}");
            assert_eq!(
                channel::from_pushgate(&mapped),
                Some((app.to_owned(), name.to_owned()))
            );
        }
        if let Ok(user) = channel::user_to_pushgate(app, name) {
            assert_eq!(validate_user(&user), Ok(()), "{user:?}");
        }
        let whole = channel::prefix_to_pushgate(app, name);
        let start = channel::prefix_to_pushgate(app, prefix);
        assert_eq!(
            whole.starts_with(&start),
            name.starts_with(prefix),
            "{name:?} {prefix:?}"
        );
    }
}

/// The JSON text of a server frame (unmasked, one frame).
fn body(frame: &[u8]) -> Value {
    assert_eq!(frame[0], 0x81, "a final text frame");
    let at = match frame[1] {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    serde_json::from_slice(&frame[at..]).expect("a Pusher frame is JSON")
}
