//! The shard's heartbeat sweep: one pass over the shard's connections per interval.
//!
//! Every connection gets a ping (encoded once per shard); one that sent nothing
//! within the timeout is marked for closing with 4001 and its writer woken, which
//! removes it from every index. There are no per-connection timers.
//!
//! The same pass expires tokens: it walks the grant side table (token-authenticated
//! connections only), tells a client whose token expired (`token_expired`), and
//! closes it with 4003 once the refresh grace period has passed too.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pushgate_protocol::Reply;
use tokio::time::Instant;

use crate::close::CloseReason;
use crate::outbound::Push;
use crate::shard::Shard;

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Sweep {
    pub pinged: usize,
    pub reaped: usize,
    pub expired: usize,
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
        if !st.grants.is_empty() {
            out.expired = self.expire_tokens(&mut st, unix_millis(), &limits);
        }
        drop(st);
        self.metrics.heartbeat_reaped.increment(out.reaped as u64);
        self.metrics.slow_disconnects.increment(slow);
        out
    }

    /// Warns connections whose token expired and closes those past the grace period.
    /// `now` is wall-clock time in Unix milliseconds (token expiry is wall-clock).
    fn expire_tokens(
        &self,
        st: &mut crate::shard::ShardState,
        now: u64,
        limits: &crate::outbound::Limits,
    ) -> usize {
        let grace = self.config.token_refresh_grace.as_millis() as u64;
        let mut expired = 0;
        let mut warning = None;
        let crate::shard::ShardState { conns, grants, .. } = st;
        for (&slot, entry) in grants.iter_mut() {
            let exp = entry.grant.expires.saturating_mul(1000);
            if now < exp {
                continue;
            }
            let q = &mut conns[slot].outbound;
            if now >= exp.saturating_add(grace) {
                if q.closing.is_none() {
                    q.close(CloseReason::TokenExpired);
                    expired += 1;
                }
            } else if !entry.warned {
                entry.warned = true;
                let frame = warning
                    .get_or_insert_with(|| Reply::TokenExpired { grace_ms: grace }.to_frame());
                let _ = q.push(frame.clone(), limits);
            }
        }
        expired
    }
}

/// The wall clock in Unix milliseconds.
pub(crate) fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
