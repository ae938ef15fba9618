//! The shard's heartbeat sweep: one pass over the shard's connections per interval.
//!
//! Every connection gets a ping (encoded once per shard); one that sent nothing
//! within the timeout is marked for closing with 4001 and its writer woken, which
//! removes it from every index. There are no per-connection timers.

use bytes::Bytes;
use tokio::time::Instant;

use crate::close::CloseReason;
use crate::outbound::Push;
use crate::shard::Shard;

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Sweep {
    pub pinged: usize,
    pub reaped: usize,
}

impl Shard {
    /// Pings every live connection and reaps the silent ones.
    pub(crate) fn sweep(&self, now: Instant, ping: &Bytes) -> Sweep {
        let timeout = self
            .config
            .heartbeat_timeout
            .as_millis()
            .min(u32::MAX as u128 / 2) as u32;
        let now_ms = self.millis(now);
        let limits = self.limits;
        let mut out = Sweep::default();
        let mut slow = 0;
        let mut st = self.state.lock();
        for (_, c) in st.conns.iter_mut() {
            if c.outbound.closing.is_some() {
                continue;
            }
            if now_ms.wrapping_sub(c.last_seen) >= timeout {
                c.outbound.close(CloseReason::HeartbeatTimeout);
                out.reaped += 1;
                continue;
            }
            c.outbound.shrink_if_idle();
            match c.outbound.push(ping.clone(), &limits) {
                Push::Queued => out.pinged += 1,
                Push::Disconnected => slow += 1,
                Push::Closed | Push::Dropped => {}
            }
        }
        drop(st);
        self.metrics.heartbeat_reaped.increment(out.reaped as u64);
        self.metrics.slow_disconnects.increment(slow);
        out
    }
}
