//! The RESP2 parser on arbitrary bytes from "Redis": never a panic (nor a stack
//! overflow on deep nesting), never consumes a partial value, and reads the same values
//! and stops on the same error whether the bytes arrive at once or in chops (the
//! publisher and subscriber read into a growing buffer).
//!
//! Input: bytes 0-3 pick the chop sizes; the rest is the stream.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pushgate_broker::redis::resp::{parse, Value};

/// Every value read and whether the stream ended on an error.
fn read(stream: &[u8], chops: &[usize]) -> (Vec<Value>, bool) {
    let mut buf = BytesMut::new();
    let mut values = Vec::new();
    let mut fed = 0;
    let mut chop = chops.iter().cycle();
    while fed < stream.len() {
        let n = (*chop.next().expect("cycle")).min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        loop {
            let before = buf.len();
            match parse(&mut buf) {
                Ok(Some(v)) => {
                    assert!(buf.len() < before, "a value consumes bytes");
                    values.push(v);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "nothing consumed while incomplete");
                    break;
                }
                Err(_) => return (values, true),
            }
        }
    }
    (values, false)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let chops: Vec<usize> = data[..4].iter().map(|&b| 1 + b as usize % 64).collect();
    let stream = &data[4..];
    let whole = read(stream, &[stream.len().max(1)]);
    // An error is found on complete lines only, so chops change nothing.
    assert_eq!(read(stream, &chops), whole);
});
