//! What one open connection may send: frames and bytes per second.
//!
//! Every frame counts, whatever it is (text, binary, continuation, ping, pong, close,
//! empty or not): each one costs the shard's thread work, so a client streaming empty
//! pongs or empty continuation frames is as much a flood as one streaming commands.
//! Bytes count as read from the socket, frame headers included.
//!
//! The meter is eight bytes in the connection's own read state, touched only by the
//! shard's thread that runs the connection: no lock, no allocation. Windows are fixed
//! seconds, so a client may send up to twice a limit across a window boundary.

use std::sync::OnceLock;
use std::time::Instant;

/// The inbound limits of every connection (from the edge's config); 0: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundLimits {
    /// Frames per second (`max_inbound_messages_per_sec`).
    pub frames_per_sec: u16,
    /// Bytes per second (`max_inbound_bytes_per_sec`).
    pub bytes_per_sec: u32,
}

/// Which limit a client went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flood {
    Frames,
    Bytes,
}

/// One connection's counts in the current second.
#[derive(Debug, Default)]
pub(crate) struct InboundMeter {
    /// The second these counts belong to (edge clock, wrapping every 18 hours).
    second: u16,
    frames: u16,
    bytes: u32,
}

impl InboundMeter {
    /// Counts `n` bytes read at second `now_s`; starts a new window on a new second.
    pub(crate) fn bytes(
        &mut self,
        now_s: u16,
        n: usize,
        limits: InboundLimits,
    ) -> Result<(), Flood> {
        if self.second != now_s {
            *self = InboundMeter {
                second: now_s,
                frames: 0,
                bytes: 0,
            };
        }
        self.bytes = self.bytes.saturating_add(n.min(u32::MAX as usize) as u32);
        match limits.bytes_per_sec {
            0 => Ok(()),
            max if self.bytes > max => Err(Flood::Bytes),
            _ => Ok(()),
        }
    }

    /// Counts one frame in the window opened by the last [`bytes`](Self::bytes).
    pub(crate) fn frame(&mut self, limits: InboundLimits) -> Result<(), Flood> {
        self.frames = self.frames.saturating_add(1);
        match limits.frames_per_sec {
            0 => Ok(()),
            max if self.frames > max => Err(Flood::Frames),
            _ => Ok(()),
        }
    }
}

/// Whole seconds since the edge started, wrapping: the meters' clock.
pub(crate) fn now_second() -> u16 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_secs() as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_bytes_are_counted_per_second() {
        let limits = InboundLimits {
            frames_per_sec: 2,
            bytes_per_sec: 100,
        };
        let mut m = InboundMeter::default();
        m.bytes(7, 10, limits).unwrap();
        assert_eq!(m.frame(limits), Ok(()));
        assert_eq!(m.frame(limits), Ok(()));
        assert_eq!(m.frame(limits), Err(Flood::Frames));
        // A new second starts a new window for both counts.
        m.bytes(8, 100, limits).unwrap();
        assert_eq!(m.frame(limits), Ok(()));
        assert_eq!(m.bytes(8, 1, limits), Err(Flood::Bytes));
    }

    #[test]
    fn zero_means_no_limit() {
        let none = InboundLimits::default();
        let mut m = InboundMeter::default();
        m.bytes(1, usize::MAX, none).unwrap();
        assert!((0..70_000).all(|_| m.frame(none).is_ok()));
    }

    #[test]
    fn the_meter_stays_eight_bytes() {
        // It lives in every open connection's entry in its shard's poller (see `Open`'s
        // size test).
        assert_eq!(std::mem::size_of::<InboundMeter>(), 8);
    }
}
