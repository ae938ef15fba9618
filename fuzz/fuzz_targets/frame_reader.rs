//! `FrameReader` on arbitrary client bytes: it must never panic, never loop, never
//! buffer past the limit, and must read the same messages and stop on the same error
//! whether the bytes arrive at once or in arbitrary chops (as `ReadState` feeds it).
//!
//! Input: byte 0 picks the message limit, bytes 1-4 the chop sizes, the rest is the
//! stream after the upgrade.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushgate_protocol::frame::{FrameReader, ProtocolError, Step};

/// Every message read (in its `Debug` form), the error that stopped the reader if any,
/// and the bytes left over waiting for more.
#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<String>,
    error: Option<ProtocolError>,
    left: usize,
}

/// Feeds `stream` in chops of the given sizes (cycled), keeping the unconsumed tail
/// between chops the way the edge does.
fn read(stream: &[u8], chops: &[usize], max: usize) -> Outcome {
    let mut reader = FrameReader::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut messages = Vec::new();
    let mut fed = 0;
    let mut chop = chops.iter().cycle();
    while fed < stream.len() {
        let n = (*chop.next().expect("cycle")).min(stream.len() - fed);
        pending.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        let mut at = 0;
        loop {
            match reader.next(&mut pending[at..], max) {
                Ok(Step::NeedMore) => break,
                Ok(Step::Consumed(n)) => {
                    assert!(n > 0 && at + n <= pending.len());
                    at += n;
                }
                Ok(Step::Message(n, m)) => {
                    messages.push(format!("{m:?}"));
                    assert!(n > 0 && at + n <= pending.len());
                    at += n;
                }
                Err(e) => {
                    return Outcome {
                        messages,
                        error: Some(e),
                        left: 0,
                    }
                }
            }
        }
        pending.drain(..at);
        // A frame is refused from its header when it is over the limit, so what waits
        // for more is at most one frame header plus `max` payload bytes.
        assert!(
            pending.len() <= 14 + max,
            "buffered {} > limit {max}",
            pending.len()
        );
    }
    Outcome {
        messages,
        error: None,
        left: pending.len(),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let max = [0, 1, 125, 126, 1024, 65536][data[0] as usize % 6];
    let chops: Vec<usize> = data[1..5].iter().map(|&b| b as usize % 32 + 1).collect();
    let stream = &data[5..];
    let whole = read(stream, &[stream.len().max(1)], max);
    let chopped = read(stream, &chops, max);
    assert_eq!(whole, chopped);
});
