//! The Redis bus body decoder on arbitrary bytes (what another node, another version or
//! a foreign publisher on our prefix may put on the bus): never a panic, and whatever
//! it accepts encodes back to a body that decodes to the same thing.
//!
//! Input: byte 0 says whether the body came on a node key (which carries connection
//! ids); the rest is the body.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pushgate_broker::wire::{decode, encode, encode_control, What};

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let for_node = first & 1 == 1;
    let Ok(decoded) = decode(Bytes::copy_from_slice(body), for_node) else {
        return;
    };
    let conns = for_node.then_some(&decoded.conns[..]);
    let again = match &decoded.what {
        What::Publication(payload) => {
            encode(&decoded.origin, decoded.exclude.as_ref(), conns, payload)
        }
        What::Control(c) => {
            if decoded.exclude.is_some() {
                return; // controls never carry an exclude; the encoder has no place for it
            }
            encode_control(&decoded.origin, conns, c)
        }
    };
    assert_eq!(decode(again, for_node).as_ref(), Ok(&decoded));
});
