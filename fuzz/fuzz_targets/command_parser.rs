//! `Command::parse` on arbitrary text (what a client's text frame can carry): it must
//! never panic; what it accepts must hold only valid channels, at most 100 per command,
//! and recovery positions only for its own channels; every reply and every error
//! must still encode as a frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushgate_protocol::command::{Command, Positions, Reply, MAX_CHANNELS_PER_COMMAND};
use pushgate_protocol::validate_channel;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // the frame reader refuses non-UTF-8 text before the parser sees it
    };
    match Command::parse(text) {
        Ok(Command::Subscribe {
            channels,
            since,
            id,
            ..
        }) => {
            check(&channels);
            // Positions only for channels of the command, each once.
            for (i, (c, _)) in since.iter().enumerate() {
                assert!(channels.contains(c), "{c:?}");
                assert!(since[..i].iter().all(|(o, _)| o != c), "{c:?} twice");
            }
            let _ = Reply::Subscribed {
                channels: &channels,
                positions: Positions(&since),
                recovered: &channels,
                unrecovered: &[],
                id: id.as_ref(),
            }
            .to_frame();
        }
        Ok(Command::Unsubscribe { channels, id }) => {
            check(&channels);
            let _ = Reply::Unsubscribed {
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

fn check(channels: &[String]) {
    assert!(!channels.is_empty() && channels.len() <= MAX_CHANNELS_PER_COMMAND);
    for c in channels {
        assert_eq!(validate_channel(c), Ok(()), "{c:?}");
    }
}
