//! How a publication reaches a client: one frame per publication.
//!
//! - Text payloads become a text frame `{"type":"pub","channel":"news","data":"<payload>"}`
//!   (`channel` is absent for publications to all, a user or a connection), so every
//!   server text frame is a JSON object with a `type`.
//! - Binary payloads stay binary: a binary frame `[len: u8][channel: len bytes][payload]`,
//!   where `len` is 0 when there is no channel.
//!
//! - On a history channel the frame also carries the publication's offset: a JSON
//!   `"offset"` member, or for binary a `0xFF` marker byte, then the channel as above,
//!   then the offset as a big-endian u64, then the payload.
//!
//! The frame is built once per publication (per channel) and shared by every recipient.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::{header_len, put_header, OpCode};
use crate::position::POSITIONED_BINARY;
use crate::MAX_CHANNEL_LEN;

/// A publication's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Text(String),
    Binary(Bytes),
}

impl Payload {
    pub fn len(&self) -> usize {
        match self {
            Payload::Text(s) => s.len(),
            Payload::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Encodes the complete frame that carries `payload` to subscribers of `channel`
/// (or to a target with no channel).
pub fn encode_publication(channel: Option<&str>, payload: &Payload) -> Bytes {
    encode(channel, None, payload)
}

/// Encodes a publication to a history channel, carrying its offset:
/// `{"type":"pub","channel":"c","offset":42,"data":"…"}`, or for a binary payload
/// `[0xFF][len][channel][offset: u64 big-endian][payload]`.
pub fn encode_positioned(channel: &str, offset: u64, payload: &Payload) -> Bytes {
    encode(Some(channel), Some(offset), payload)
}

fn encode(channel: Option<&str>, offset: Option<u64>, payload: &Payload) -> Bytes {
    match payload {
        Payload::Text(text) => {
            let mut body =
                Vec::with_capacity(48 + channel.map_or(0, str::len) + text.len() + text.len() / 8);
            body.extend_from_slice(br#"{"type":"pub","#);
            if let Some(ch) = channel {
                body.extend_from_slice(br#""channel":"#);
                serde_json::to_writer(&mut body, ch).expect("writing to a Vec cannot fail");
                body.push(b',');
            }
            if let Some(offset) = offset {
                body.extend_from_slice(br#""offset":"#);
                body.extend_from_slice(offset.to_string().as_bytes());
                body.push(b',');
            }
            body.extend_from_slice(br#""data":"#);
            serde_json::to_writer(&mut body, text).expect("writing to a Vec cannot fail");
            body.push(b'}');
            let mut frame = BytesMut::with_capacity(header_len(body.len()) + body.len());
            put_header(&mut frame, OpCode::Text, body.len());
            frame.put_slice(&body);
            frame.freeze()
        }
        Payload::Binary(data) => {
            let ch = channel.unwrap_or("").as_bytes();
            debug_assert!(
                ch.len() <= MAX_CHANNEL_LEN,
                "channel names are validated to 128 bytes"
            );
            let marker = usize::from(offset.is_some());
            let len = marker + 1 + ch.len() + offset.map_or(0, |_| 8) + data.len();
            let mut frame = BytesMut::with_capacity(header_len(len) + len);
            put_header(&mut frame, OpCode::Binary, len);
            if offset.is_some() {
                frame.put_u8(POSITIONED_BINARY);
            }
            frame.put_u8(ch.len() as u8);
            frame.put_slice(ch);
            if let Some(offset) = offset {
                frame.put_u64(offset);
            }
            frame.put_slice(data);
            frame.freeze()
        }
    }
}

/// The payload of a frame built by [`encode_publication`] or [`encode_positioned`]
/// (for history reads; never on the fan-out path). `None` if it is not one.
pub fn decode_publication(frame: &[u8]) -> Option<Payload> {
    let (opcode, body) = split_header(frame)?;
    match opcode {
        0x1 => {
            #[derive(serde::Deserialize)]
            struct Pub {
                data: String,
            }
            let p: Pub = serde_json::from_slice(body).ok()?;
            Some(Payload::Text(p.data))
        }
        0x2 => {
            let (positioned, rest) = match body.split_first()? {
                (&POSITIONED_BINARY, rest) => (true, rest),
                _ => (false, body),
            };
            let (&len, rest) = rest.split_first()?;
            let rest = rest.get(len as usize..)?;
            let data = if positioned { rest.get(8..)? } else { rest };
            Some(Payload::Binary(Bytes::copy_from_slice(data)))
        }
        _ => None,
    }
}

/// The opcode and payload of an unmasked frame.
pub(crate) fn split_header(frame: &[u8]) -> Option<(u8, &[u8])> {
    let opcode = frame.first()? & 0x0F;
    let (len, at): (usize, usize) = match *frame.get(1)? {
        126 => (
            u16::from_be_bytes(frame.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(frame.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    Some((opcode, frame.get(at..at.checked_add(len)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_envelope_is_json_with_escaped_data() {
        let f = encode_publication(Some("news"), &Payload::Text("say \"hi\"\n".into()));
        assert_eq!(f[0], 0x81);
        let v: serde_json::Value = serde_json::from_slice(&f[2..]).unwrap();
        assert_eq!(v["type"], "pub");
        assert_eq!(v["channel"], "news");
        assert_eq!(v["data"], "say \"hi\"\n");
        let f = encode_publication(None, &Payload::Text("x".into()));
        assert_eq!(&f[2..], br#"{"type":"pub","data":"x"}"#);
    }

    #[test]
    fn positioned_publications_carry_their_offset_and_decode_back() {
        let text = Payload::Text("a \"b\"".into());
        let f = encode_positioned("chat:1", 42, &text);
        assert_eq!(
            &f[2..],
            br#"{"type":"pub","channel":"chat:1","offset":42,"data":"a \"b\""}"#
        );
        assert_eq!(decode_publication(&f), Some(text));
        let bin = Payload::Binary(Bytes::from_static(&[1, 2, 3]));
        let f = encode_positioned("ab", 258, &bin);
        assert_eq!(
            &f[..],
            &[0x82, 15, 0xFF, 2, b'a', b'b', 0, 0, 0, 0, 0, 0, 1, 2, 1, 2, 3]
        );
        assert_eq!(decode_publication(&f), Some(bin.clone()));
        assert_eq!(
            decode_publication(&encode_publication(Some("ab"), &bin)),
            Some(bin)
        );
        let big = Payload::Text("x".repeat(70_000));
        assert_eq!(
            decode_publication(&encode_positioned("c", 1, &big)),
            Some(big)
        );
        assert_eq!(decode_publication(&[0x82, 5, 9]), None, "truncated");
    }

    #[test]
    fn binary_envelope_prefixes_the_channel() {
        let f = encode_publication(Some("ab"), &Payload::Binary(Bytes::from_static(&[0, 255])));
        assert_eq!(&f[..], &[0x82, 5, 2, b'a', b'b', 0, 255]);
        let f = encode_publication(None, &Payload::Binary(Bytes::from_static(&[9])));
        assert_eq!(&f[..], &[0x82, 2, 0, 9]);
    }
}
