//! `Command::parse` on arbitrary text (what a client's text frame can carry): it must
//! never panic; what it accepts must hold only valid channels, at most 100 per command;
//! every error must still encode as a reply frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushgate_protocol::command::{Command, Reply, MAX_CHANNELS_PER_COMMAND};
use pushgate_protocol::validate_channel;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // the frame reader refuses non-UTF-8 text before the parser sees it
    };
    match Command::parse(text) {
        Ok(Command::Subscribe { channels, id }) | Ok(Command::Unsubscribe { channels, id }) => {
            assert!(!channels.is_empty() && channels.len() <= MAX_CHANNELS_PER_COMMAND);
            for c in &channels {
                assert_eq!(validate_channel(c), Ok(()), "{c:?}");
            }
            let _ = Reply::Subscribed {
                channels: &channels,
                id: id.as_ref(),
            }
            .to_frame();
        }
        Ok(Command::Ping { id }) => {
            let _ = Reply::Pong { id: id.as_ref() }.to_frame();
        }
        Ok(other) => {
            let _ = format!("{other:?}"); // commands added later: parsing must not panic
        }
        Err((e, id)) => {
            let _ = Reply::Error {
                code: e.code(),
                message: e.to_string(),
                id: id.as_ref(),
            }
            .to_frame();
        }
    }
});
