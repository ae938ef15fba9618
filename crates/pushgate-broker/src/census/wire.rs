//! The census's two bus messages, as control messages of the bus format
//! (`crate::wire`), so that a node of an older version drops them as undecodable
//! (it never delivers them to clients) and simply does not answer:
//!
//! ```text
//! query, on the broadcast key (no connection list):
//!   u8 6, u16 LE name count, u64 LE query id, u8 kind (0: the names, 1: a prefix,
//!   then exactly one name), count × (u8 length, name)
//! answer, on the asker's node key (an empty connection list: u32 LE 0):
//!   u8 7, u16 LE 0, u64 LE query id, u8 flags (1: truncated, more channels than
//!   answered), u32 LE count, count × (u8 length, name, u64 LE subscribers)
//! ```
//!
//! The query id is the asker's: with the asker's node id (the header's origin) it
//! names one census. Names are pushgate channel names (at most 128 bytes).

use bytes::{Buf, BufMut, Bytes};

use super::{CensusQuery, Counts};
use crate::wire::{get_name, header, put_name, DecodeError, CONTROL};

const QUERY: u8 = 6;
const ANSWER: u8 = 7;
const NAMES: u8 = 0;
const PREFIX: u8 = 1;
const TRUNCATED: u8 = 1;

/// A census message from the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Count `query` and answer the origin (the header's) with `id`.
    Query { id: u64, query: CensusQuery },
    /// The origin's counts for the asker's query `id`.
    Answer { id: u64, counts: Counts },
}

/// A query, for the broadcast key. At most `u16::MAX` names are written (callers
/// send at most [`super::MAX_NAMES`]).
pub fn encode_query(origin: &str, id: u64, q: &CensusQuery) -> Bytes {
    let (kind, names): (u8, &[String]) = match q {
        CensusQuery::Prefix(p) => (PREFIX, std::slice::from_ref(p)),
        CensusQuery::Channels(names) => (NAMES, names),
    };
    let names = &names[..names.len().min(u16::MAX as usize)];
    let room = 12 + names.iter().map(|n| 1 + n.len()).sum::<usize>();
    let mut out = header(origin, CONTROL, None, None, room);
    out.put_u8(QUERY);
    out.put_u16_le(names.len() as u16);
    out.put_u64_le(id);
    out.put_u8(kind);
    for n in names {
        put_name(&mut out, n);
    }
    out.freeze()
}

/// An answer, for the asker's node key.
pub fn encode_answer(origin: &str, id: u64, c: &Counts) -> Bytes {
    let room = 16 + c.channels.iter().map(|(n, _)| 9 + n.len()).sum::<usize>();
    let mut out = header(origin, CONTROL, None, Some(&[]), room);
    out.put_u8(ANSWER);
    out.put_u16_le(0);
    out.put_u64_le(id);
    out.put_u8(if c.truncated { TRUNCATED } else { 0 });
    out.put_u32_le(c.channels.len() as u32);
    for (name, n) in &c.channels {
        put_name(&mut out, name);
        out.put_u64_le(*n);
    }
    out.freeze()
}

/// Decodes what follows a census control's op and count.
pub(crate) fn decode(op: u8, n: u16, mut b: Bytes) -> Result<Msg, DecodeError> {
    if b.remaining() < 9 {
        return Err(DecodeError("truncated census message"));
    }
    let id = b.get_u64_le();
    let kind_or_flags = b.get_u8();
    match op {
        QUERY => {
            let mut names = (0..n)
                .map(|_| get_name(&mut b))
                .collect::<Result<Vec<_>, _>>()?;
            let query = match kind_or_flags {
                PREFIX if names.len() == 1 => CensusQuery::Prefix(names.remove(0)),
                PREFIX => return Err(DecodeError("census prefix query needs one name")),
                NAMES => CensusQuery::Channels(names),
                _ => return Err(DecodeError("unknown census query kind")),
            };
            Ok(Msg::Query { id, query })
        }
        _ => {
            if b.remaining() < 4 {
                return Err(DecodeError("truncated census answer"));
            }
            let count = b.get_u32_le() as usize;
            // Each entry takes at least 9 bytes: a count beyond what remains is a lie.
            if count > b.remaining() / 9 {
                return Err(DecodeError("truncated census answer"));
            }
            let mut channels = Vec::with_capacity(count);
            for _ in 0..count {
                let name = get_name(&mut b)?;
                if b.remaining() < 8 {
                    return Err(DecodeError("truncated census answer"));
                }
                channels.push((name, b.get_u64_le()));
            }
            Ok(Msg::Answer {
                id,
                counts: Counts {
                    channels,
                    truncated: kind_or_flags & TRUNCATED != 0,
                },
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode as decode_body, encode, What};
    use pushgate_protocol::Payload;

    #[test]
    fn queries_round_trip_and_never_panic_when_cut() {
        for q in [
            CensusQuery::Prefix(String::new()),
            CensusQuery::Prefix("pusher/1/presence-".into()),
            CensusQuery::Channels(vec![]),
            CensusQuery::Channels(vec!["pusher/1/a".into()]),
            CensusQuery::Channels(vec!["a".into(), "b:c".into(), "x".repeat(128)]),
        ] {
            let b = encode_query("n1", 42, &q);
            let body = decode_body(b.clone(), false).unwrap();
            assert_eq!(body.origin, "n1");
            assert_eq!(body.what, What::Census(Msg::Query { id: 42, query: q }));
            for cut in 0..b.len() {
                assert!(decode_body(b.slice(..cut), false).is_err(), "cut {cut}");
            }
        }
    }

    #[test]
    fn answers_round_trip_on_a_node_key() {
        for counts in [
            Counts::default(),
            Counts {
                channels: vec![("a".into(), 1), ("b".into(), u64::MAX)],
                truncated: true,
            },
        ] {
            let b = encode_answer("n2", u64::MAX, &counts);
            let body = decode_body(b.clone(), true).unwrap();
            assert_eq!((body.origin.as_str(), body.conns.len()), ("n2", 0));
            assert_eq!(
                body.what,
                What::Census(Msg::Answer {
                    id: u64::MAX,
                    counts
                })
            );
            for cut in 0..b.len() {
                assert!(decode_body(b.slice(..cut), true).is_err(), "cut {cut}");
            }
        }
    }

    #[test]
    fn a_lying_count_is_an_error_not_an_allocation() {
        let mut b = encode_answer("n2", 1, &Counts::default()).to_vec();
        let at = b.len() - 4;
        b[at..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_body(Bytes::from(b), true).is_err());
    }

    #[test]
    fn census_messages_are_controls_not_publications() {
        // What an older node makes of them: a control it does not know (dropped),
        // never a publication for its clients. Its decoder errs on the op, as ours
        // does on an op beyond 7.
        let q = encode_query("n1", 1, &CensusQuery::Prefix("p".into()));
        assert_eq!(q[1] & CONTROL, CONTROL);
        let mut unknown = q.to_vec();
        unknown[2 + 1 + "n1".len()] = 8;
        assert!(decode_body(Bytes::from(unknown), false).is_err());
        let p = encode("n1", None, None, &Payload::Text("x".into()), false);
        assert_eq!(p[1] & CONTROL, 0);
    }
}
