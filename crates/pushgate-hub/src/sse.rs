//! A publication's Server-Sent Events bytes, encoded once and shared by every SSE
//! recipient, as its WebSocket frame is by every WebSocket recipient.
//!
//! Encoding is lazy: the first SSE connection the fan-out meets (on any shard) builds
//! the event from the frame ([`pushgate_protocol::sse::from_ws`]); the others get a
//! refcount clone. A publication with no SSE recipient costs an empty `OnceLock` per
//! job and nothing else (the per-channel cells are allocated only when needed).

use std::sync::Arc;

use bytes::Bytes;
use pushgate_protocol::sse;

use crate::per_frame::PerFrame;

/// Sent in place of a frame that has no event form (never expected for a publication).
const NO_EVENT: &[u8] = b": unsupported publication\n\n";

/// The SSE events of one job: one per frame of its route.
#[derive(Default)]
pub(crate) struct SseFrames(PerFrame<Bytes>);

impl SseFrames {
    /// The event of a route's single frame.
    #[inline]
    pub(crate) fn one(&self, frame: &Bytes) -> &Bytes {
        self.0.one(|| convert(frame, None))
    }

    /// The event of channel `i` of `n`, from its frame; `epoch` is its stream's for a
    /// history channel.
    #[inline]
    pub(crate) fn channel(
        &self,
        i: usize,
        n: usize,
        frame: &Bytes,
        epoch: Option<&Arc<str>>,
    ) -> &Bytes {
        self.0.channel(i, n, || convert(frame, epoch.map(|e| &**e)))
    }
}

fn convert(frame: &Bytes, epoch: Option<&str>) -> Bytes {
    sse::from_ws(frame, |_| epoch).unwrap_or_else(|| Bytes::from_static(NO_EVENT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushgate_protocol::{encode_positioned, encode_publication, Payload};

    #[test]
    fn each_event_is_built_once_and_shared() {
        let f = SseFrames::default();
        let frame = encode_publication(None, &Payload::Text("x".into()));
        let a = f.one(&frame).clone();
        let b = f.one(&frame).clone();
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same bytes, not a copy");
        assert_eq!(&a[..], b"data: x\n\n");
        let epoch: Arc<str> = "e".into();
        let c1 = encode_positioned("c", 3, &Payload::Text("y".into()));
        let e = f.channel(1, 2, &c1, Some(&epoch)).clone();
        assert_eq!(&e[..], b"id: c:e:3\nevent: c\ndata: y\n\n");
        assert_eq!(f.channel(1, 2, &c1, Some(&epoch)).as_ptr(), e.as_ptr());
    }
}
