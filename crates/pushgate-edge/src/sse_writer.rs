//! What an SSE stream writes for each frame its shard queued, and its event ids.
//!
//! Live publications arrive as SSE events the hub built once for every SSE recipient;
//! they are written as they are, except for one line: a stream that follows several
//! history channels needs ids naming every one of them (the browser keeps only the
//! last id it saw), so such an event's `id:` line is replaced by this stream's
//! [`Cursor`] and the rest of the shared bytes follows untouched (a refcount slice).
//! A stream with at most one history channel writes the shared bytes unchanged.
//!
//! The rest of what a shard queues is WebSocket frames, converted here, per
//! connection, because it is rare or tiny: heartbeat pings become `:\n\n`, recovered
//! publications and cluster notices (`unrecoverable`) become events, and replies with
//! no SSE form (a `token_expired` warning) are left out.

use std::collections::VecDeque;

use bytes::Bytes;
use pushgate_protocol::sse::{self, Cursor};

/// A WebSocket ping frame's first byte (FIN + opcode 9).
const PING: u8 = 0x89;

/// The positions this stream's client has seen, one per history channel.
#[derive(Debug, Default)]
pub(crate) struct SseWriter {
    cursor: Cursor,
}

impl SseWriter {
    /// Appends what to write for one queued frame to `out`.
    pub(crate) fn convert(&mut self, frame: Bytes, out: &mut VecDeque<Bytes>) {
        match frame.first() {
            Some(&PING) => out.push_back(Bytes::from_static(sse::HEARTBEAT)),
            Some(b) if b & 0x80 != 0 => {
                let cursor = &self.cursor;
                let epoch = |ch: &str| {
                    cursor
                        .0
                        .iter()
                        .find(|(c, _)| c == ch)
                        .map(|(_, p)| p.epoch.as_str())
                };
                if let Some(event) = sse::from_ws(&frame, epoch) {
                    self.event(event, out);
                }
            }
            Some(_) => self.event(frame, out),
            None => {}
        }
    }

    /// An SSE event: its `id:` line (if any) updates the cursor, and is replaced by the
    /// whole cursor when the event's id does not name every channel of it.
    fn event(&mut self, event: Bytes, out: &mut VecDeque<Bytes>) {
        let Some(rest) = event.strip_prefix(b"id: ") else {
            out.push_back(event);
            return;
        };
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            out.push_back(event);
            return;
        };
        let Ok(id) = std::str::from_utf8(&rest[..end]) else {
            out.push_back(event);
            return;
        };
        let named = self.learn(id);
        if named == self.cursor.0.len() {
            out.push_back(event);
            return;
        }
        let line = format!("id: {}\n", self.cursor);
        out.push_back(Bytes::from(line));
        out.push_back(event.slice(4 + end + 1..));
    }

    /// Records the positions an id names; returns how many it names.
    fn learn(&mut self, id: &str) -> usize {
        if !id.contains(',') {
            // One channel (every publication): no allocation once the channel is known.
            let mut parts = id.rsplitn(3, ':');
            if let (Some(offset), Some(epoch), Some(channel)) =
                (parts.next(), parts.next(), parts.next())
            {
                if let Ok(offset) = offset.parse() {
                    self.cursor.set(channel, epoch, offset);
                }
            }
            return 1;
        }
        let Ok(parsed) = Cursor::parse(id, usize::MAX) else {
            return 0;
        };
        for (c, p) in &parsed.0 {
            self.cursor.set(c, &p.epoch, p.offset);
        }
        parsed.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_protocol::{encode_positioned, Payload};

    fn written(w: &mut SseWriter, frame: Bytes) -> String {
        let mut out = VecDeque::new();
        w.convert(frame, &mut out);
        out.iter()
            .map(|b| std::str::from_utf8(b).unwrap())
            .collect()
    }

    #[test]
    fn one_history_channel_writes_the_shared_bytes() {
        let mut w = SseWriter::default();
        let shared = Bytes::from_static(b"id: a:e:1\nevent: a\ndata: x\n\n");
        let mut out = VecDeque::new();
        w.convert(shared.clone(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_ptr(), shared.as_ptr(), "not copied");
    }

    #[test]
    fn several_history_channels_get_ids_naming_all() {
        let mut w = SseWriter::default();
        let reply = Bytes::from_static(b"id: a:e:1,b:f:5\nevent: #subscribed\ndata: {}\n\n");
        assert_eq!(
            written(&mut w, reply),
            "id: a:e:1,b:f:5\nevent: #subscribed\ndata: {}\n\n"
        );
        let live = Bytes::from_static(b"id: b:f:6\nevent: b\ndata: y\n\n");
        assert_eq!(
            written(&mut w, live),
            "id: a:e:1,b:f:6\nevent: b\ndata: y\n\n"
        );
        // A recovered publication arrives as its WebSocket frame: the epoch is the
        // stream's, from the cursor.
        let frame = encode_positioned("a", 2, &Payload::Text("z".into()));
        assert_eq!(
            written(&mut w, frame),
            "id: a:e:2,b:f:6\nevent: a\ndata: z\n\n"
        );
        let ping = Bytes::from_static(&[0x89, 0]);
        assert_eq!(written(&mut w, ping), ":\n\n");
        let plain = Bytes::from_static(b"event: c\ndata: w\n\n");
        assert_eq!(written(&mut w, plain), "event: c\ndata: w\n\n");
        let expired = pushgate_protocol::Reply::TokenExpired { grace_ms: 1 }.to_frame();
        assert_eq!(written(&mut w, expired), "", "no SSE form");
    }
}
