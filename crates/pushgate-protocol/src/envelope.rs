//! How a publication reaches a client: one frame per publication.
//!
//! - Text payloads become a text frame `{"type":"pub","channel":"news","data":"<payload>"}`
//!   (`channel` is absent for publications to all, a user or a connection), so every
//!   server text frame is a JSON object with a `type`.
//! - Binary payloads stay binary: a binary frame `[len: u8][channel: len bytes][payload]`,
//!   where `len` is 0 when there is no channel.
//!
//! The frame is built once per publication (per channel) and shared by every recipient.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::{header_len, put_header, OpCode};

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
    match payload {
        Payload::Text(text) => {
            let mut body =
                Vec::with_capacity(32 + channel.map_or(0, str::len) + text.len() + text.len() / 8);
            body.extend_from_slice(br#"{"type":"pub","#);
            if let Some(ch) = channel {
                body.extend_from_slice(br#""channel":"#);
                serde_json::to_writer(&mut body, ch).expect("writing to a Vec cannot fail");
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
                ch.len() <= u8::MAX as usize,
                "channel names are validated to 128 bytes"
            );
            let len = 1 + ch.len() + data.len();
            let mut frame = BytesMut::with_capacity(header_len(len) + len);
            put_header(&mut frame, OpCode::Binary, len);
            frame.put_u8(ch.len() as u8);
            frame.put_slice(ch);
            frame.put_slice(data);
            frame.freeze()
        }
    }
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
    fn binary_envelope_prefixes_the_channel() {
        let f = encode_publication(Some("ab"), &Payload::Binary(Bytes::from_static(&[0, 255])));
        assert_eq!(&f[..], &[0x82, 5, 2, b'a', b'b', 0, 255]);
        let f = encode_publication(None, &Payload::Binary(Bytes::from_static(&[9])));
        assert_eq!(&f[..], &[0x82, 2, 0, 9]);
    }
}
