//! The Redis bus body decoder on arbitrary bytes (what another node, another version or
//! a foreign publisher on our prefix may put on the bus): never a panic, and whatever
//! it accepts encodes back (as the node or the history script writes it) to a body that
//! decodes to the same thing.
//!
//! Input: byte 0 says whether the body came on a node key (which carries connection
//! ids); the rest is the body.
#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use pushgate_broker::census::wire::{encode_answer, encode_query, Msg};
use pushgate_broker::wire::{
    decode, encode, encode_control, encode_presence, payload_bytes, position_bytes,
    positioned_head, What,
};

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let for_node = first & 1 == 1;
    let Ok(decoded) = decode(Bytes::copy_from_slice(body), for_node) else {
        return;
    };
    let conns = for_node.then_some(&decoded.conns[..]);
    let again = match (&decoded.what, &decoded.position) {
        (What::Publication(payload), None) => encode(
            &decoded.origin,
            decoded.exclude.as_ref(),
            conns,
            payload,
            decoded.echo,
        ),
        (What::Publication(payload), Some(position)) => {
            if for_node {
                return; // the script writes positions on channel keys only
            }
            // What the history script writes: the head, the position, the payload.
            let mut out = BytesMut::new();
            out.put(positioned_head(
                &decoded.origin,
                decoded.exclude.as_ref(),
                payload,
            ));
            out.put(position_bytes(position));
            out.put_slice(payload_bytes(payload));
            out.freeze()
        }
        (What::Control(c), _) => {
            if decoded.exclude.is_some() || decoded.position.is_some() || decoded.echo {
                return; // the control encoder has no place for these
            }
            encode_control(&decoded.origin, conns, c)
        }
        (What::Presence(note), _) => {
            if for_node || decoded.exclude.is_some() || decoded.position.is_some() || decoded.echo {
                return; // written on channel keys, with none of these
            }
            encode_presence(&decoded.origin, note)
        }
        (What::Census(msg), _) => {
            if decoded.exclude.is_some() || decoded.position.is_some() || decoded.echo {
                return;
            }
            match msg {
                // A query goes on the broadcast key, an answer on the asker's node key
                // with an empty connection list.
                Msg::Query { id, query } if !for_node => encode_query(&decoded.origin, *id, query),
                Msg::Answer { id, counts } if for_node && decoded.conns.is_empty() => {
                    encode_answer(&decoded.origin, *id, counts)
                }
                _ => return,
            }
        }
    };
    assert_eq!(decode(again, for_node).as_ref(), Ok(&decoded));
});
