//! `Cursor::parse` on arbitrary text (an SSE client's `Last-Event-ID` header or its
//! `?since=`): never a panic; what it accepts holds at most the allowed entries, valid
//! channels, each once, and non-empty epochs without whitespace; and what pushgate
//! writes back as an event id (`Display`) reads as the same cursor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushgate_protocol::sse::Cursor;
use pushgate_protocol::validate_channel;

const MAX: usize = 8;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // header values reach the parser as text
    };
    let Ok(cursor) = Cursor::parse(text, MAX) else {
        return;
    };
    assert!(cursor.0.len() <= MAX);
    for (i, (channel, position)) in cursor.0.iter().enumerate() {
        assert_eq!(validate_channel(channel), Ok(()), "{channel:?}");
        assert!(
            cursor.0[..i].iter().all(|(c, _)| c != channel),
            "{channel:?} twice"
        );
        let epoch = &position.epoch;
        assert!(!epoch.is_empty() && !epoch.contains(char::is_whitespace));
        assert!(!epoch.contains([',', ':']), "{epoch:?}");
    }
    let id = cursor.to_string();
    assert_eq!(Cursor::parse(&id, MAX).as_ref(), Ok(&cursor), "{id:?}");
});
