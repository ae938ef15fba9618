//! Keeping a task's own [`Pool`] usable, for the tasks that also put their whole state
//! again every third of a TTL (presence, occupancy): the slot map (or the primary) is
//! read again when it is due, and after a reconnection or a failed write the task's
//! refresh tick fires at once, because Redis may have lost what it wrote.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;

use super::conn::ConnError;
use super::router::Pool;
use super::Backoff;

/// A Redis Cluster's slot map is read again this often, whatever happens...
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// ...and after a `MOVED`, a failed node or an error reply, at most this often.
const REFRESH_MIN: Duration = Duration::from_millis(100);

pub(crate) struct Upkeep {
    up: bool,
    /// Something was not written: everything is put again once the pool is read again.
    refill: bool,
    refreshed: Instant,
    backoff: Backoff,
}

impl Upkeep {
    pub(crate) fn new() -> Upkeep {
        Upkeep {
            up: false,
            refill: false,
            refreshed: Instant::now(),
            backoff: Backoff::new(),
        }
    }

    /// Reads the slot map (or finds the primary) again if it is due. `Err` when Redis
    /// cannot be reached: the pool is reset, and the caller waits the returned pause
    /// before it calls this again.
    pub(crate) async fn check(
        &mut self,
        pool: &mut Pool,
        tick: &mut Interval,
    ) -> Result<(), (ConnError, Duration)> {
        let due = pool.topology.is_none()
            || (pool.stale && self.refreshed.elapsed() >= REFRESH_MIN)
            || (pool.is_cluster() && self.refreshed.elapsed() >= REFRESH_EVERY);
        if !due {
            return Ok(());
        }
        self.refreshed = Instant::now();
        match pool.refresh().await {
            Ok(()) => {
                if !self.up || self.refill {
                    // Puts everything now: Redis may have lost it meanwhile.
                    tick.reset_immediately();
                }
                if !self.up {
                    self.up = true;
                    self.backoff.reset();
                }
                self.refill = false;
                Ok(())
            }
            Err(e) => {
                self.up = false;
                pool.reset();
                Err((e, self.backoff.next()))
            }
        }
    }

    /// Something was not written (a node failed, an error reply): the pool reads the
    /// slot map (or finds the primary) again within `REFRESH_MIN`, and everything is
    /// put again then.
    pub(crate) fn failed(&mut self, pool: &mut Pool) {
        self.refill = true;
        pool.stale = true;
    }
}

/// Waits out the `pause` [`Upkeep::check`] returned while Redis is unreachable, handing
/// each change that arrives meanwhile to `held` (the task keeps it or reports it
/// failed). `false` when the task must end: `stop` was cancelled or every sender is gone.
pub(crate) async fn wait_out<T>(
    pause: Duration,
    stop: &CancellationToken,
    rx: &mut mpsc::UnboundedReceiver<T>,
    mut held: impl FnMut(T),
) -> bool {
    let pause = tokio::time::sleep(pause);
    tokio::pin!(pause);
    loop {
        tokio::select! {
            _ = &mut pause => return true,
            _ = stop.cancelled() => return false,
            op = rx.recv() => match op {
                Some(op) => held(op),
                None => return false,
            },
        }
    }
}
