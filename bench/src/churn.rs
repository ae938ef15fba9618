//! Scenario `churn`: short-lived connections opened at a steady rate next
//! to the stable (measured) ones, in the coordinator process.
//!
//! Connection k opens at k / rate seconds, stays for a pseudo-random time
//! uniform in [0, 2 × hold] (reading and discarding what it is sent, so the
//! server never sees it as slow), then leaves in one of three ways, in turn:
//! a WebSocket close handshake (CLOSE frame, then wait up to 2 s for the
//! server to close TCP), a plain TCP close (FIN) without a CLOSE frame, or
//! a reset (RST, `SO_LINGER` 0). Each way frees the server's connection on
//! a different path; a leak in any of them shows in the gauge afterwards.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::client::WorkerConfig;
use crate::conn;
use crate::frame;
use crate::recv::new_histogram;

/// How long a clean close waits for the server to close the TCP connection.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Counters of the churning connections.
pub struct ChurnStats {
    pub attempted: u64,
    pub opened: u64,
    pub failed: u64,
    /// CLOSE sent and the server closed TCP within [`CLOSE_WAIT`].
    pub closed_clean: u64,
    /// CLOSE sent but the server did not close TCP in time.
    pub clean_unanswered: u64,
    pub closed_fin: u64,
    pub closed_rst: u64,
    /// The server closed the connection before it meant to leave.
    pub closed_by_server: u64,
    /// Churn connections open right now, and the most at once.
    pub open_now: u64,
    pub max_open: u64,
    /// Tasks not finished yet (connecting, holding or closing).
    pub in_flight: u64,
    /// TCP connect + WebSocket handshake, µs.
    pub handshake_us: Histogram<u64>,
    pub errors: Vec<String>,
    pub first_ns: u64,
    pub last_ns: u64,
}

impl Default for ChurnStats {
    fn default() -> Self {
        Self {
            attempted: 0,
            opened: 0,
            failed: 0,
            closed_clean: 0,
            clean_unanswered: 0,
            closed_fin: 0,
            closed_rst: 0,
            closed_by_server: 0,
            open_now: 0,
            max_open: 0,
            in_flight: 0,
            handshake_us: new_histogram(),
            errors: Vec::new(),
            first_ns: 0,
            last_ns: 0,
        }
    }
}

impl ChurnStats {
    fn error(&mut self, e: String) {
        if self.errors.len() < 8 && !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }
}

pub struct Churn {
    pub conn_cfg: Rc<WorkerConfig>,
    /// Connections opened per second.
    pub rate: f64,
    /// How many to open in all (rate × duration).
    pub total: u64,
    /// Mean time a connection stays.
    pub hold: Duration,
    /// Index of the first churn connection (source address spread).
    pub first_index: usize,
}

/// Pseudo-random, deterministic hold of connection `k`: uniform in
/// [0, 2 × hold].
fn hold_for(k: u64, hold: Duration) -> Duration {
    let mut z = k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 31;
    hold.mul_f64((z % 2001) as f64 / 1000.0)
}

/// Open `total` connections at `rate`, then wait (bounded) for every one of
/// them to have left. `stop` ends the opening early.
pub async fn drive(c: Churn, stats: Rc<RefCell<ChurnStats>>, stop: Rc<Cell<bool>>) {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / c.rate));
    // Keep the count: a late tick opens at once rather than being dropped.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    stats.borrow_mut().first_ns = crate::recv::now_ns();
    for k in 0..c.total {
        if stop.get() {
            break;
        }
        ticker.tick().await;
        {
            let mut s = stats.borrow_mut();
            s.attempted += 1;
            s.in_flight += 1;
        }
        tokio::task::spawn_local(one(
            c.first_index + k as usize,
            c.conn_cfg.clone(),
            hold_for(k, c.hold),
            stats.clone(),
        ));
    }
    stats.borrow_mut().last_ns = crate::recv::now_ns();
    // Connect timeout + longest hold + close wait, plus slack.
    let bound = Instant::now() + c.conn_cfg.connect_timeout + c.hold * 2 + CLOSE_WAIT * 2;
    while stats.borrow().in_flight > 0 && Instant::now() < bound {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = stats.borrow().in_flight;
    if left > 0 {
        stats
            .borrow_mut()
            .error(format!("{left} churn connections still busy at the end"));
    }
}

async fn one(idx: usize, cfg: Rc<WorkerConfig>, hold: Duration, st: Rc<RefCell<ChurnStats>>) {
    let t0 = Instant::now();
    let res = tokio::time::timeout(cfg.connect_timeout, conn::open(idx, &cfg)).await;
    let mut stream = match res {
        Ok(Ok((s, _hello))) => s,
        Ok(Err(e)) => return fail(&st, format!("churn connect: {e:#}")),
        Err(_) => return fail(&st, "churn connect: timed out".into()),
    };
    {
        let mut s = st.borrow_mut();
        let us = t0.elapsed().as_micros() as u64;
        s.handshake_us.saturating_record(us.max(1));
        s.opened += 1;
        s.open_now += 1;
        s.max_open = s.max_open.max(s.open_now);
    }
    let mut buf = vec![0u8; 4096];
    let server_closed = !read_until(&mut stream, &mut buf, Instant::now() + hold).await;
    let outcome = if server_closed {
        Outcome::ByServer
    } else {
        leave(stream, &mut buf, idx).await
    };
    let mut s = st.borrow_mut();
    match outcome {
        Outcome::ByServer => s.closed_by_server += 1,
        Outcome::Clean => s.closed_clean += 1,
        Outcome::CleanUnanswered => s.clean_unanswered += 1,
        Outcome::Fin => s.closed_fin += 1,
        Outcome::Rst => s.closed_rst += 1,
    }
    s.open_now -= 1;
    s.in_flight -= 1;
}

fn fail(st: &RefCell<ChurnStats>, e: String) {
    let mut s = st.borrow_mut();
    s.failed += 1;
    s.in_flight -= 1;
    s.error(e);
}

enum Outcome {
    ByServer,
    Clean,
    CleanUnanswered,
    Fin,
    Rst,
}

/// Read and discard until `deadline`. False if the server closed first
/// (EOF or error).
async fn read_until(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> bool {
    loop {
        match tokio::time::timeout_at(deadline, stream.read(buf)).await {
            Err(_) => return true,
            Ok(Ok(0)) | Ok(Err(_)) => return false,
            Ok(Ok(_)) => {}
        }
    }
}

async fn leave(mut stream: TcpStream, buf: &mut [u8], idx: usize) -> Outcome {
    match idx % 3 {
        0 => {
            // Close handshake: CLOSE 1000, then the server closes TCP.
            let mut seed = idx as u64 | 1;
            let mut out = Vec::with_capacity(8);
            frame::encode_client_frame(
                frame::OP_CLOSE,
                &1000u16.to_be_bytes(),
                frame::mask_key(&mut seed),
                &mut out,
            );
            if stream.write_all(&out).await.is_err() {
                return Outcome::ByServer;
            }
            if read_until(&mut stream, buf, Instant::now() + CLOSE_WAIT).await {
                Outcome::CleanUnanswered
            } else {
                Outcome::Clean
            }
        }
        1 => {
            // Plain FIN: drain what is queued first (closing a socket with
            // unread data sends RST instead), then shut down and drop.
            while matches!(stream.try_read(buf), Ok(n) if n > 0) {}
            let _ = stream.shutdown().await;
            Outcome::Fin
        }
        _ => {
            let _ = stream.set_zero_linger();
            Outcome::Rst
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_spread_over_twice_the_mean() {
        let h = Duration::from_millis(1000);
        let v: Vec<Duration> = (0..10_000).map(|k| hold_for(k, h)).collect();
        assert!(v.iter().all(|d| *d <= h * 2));
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        assert!(
            mean > Duration::from_millis(950) && mean < Duration::from_millis(1050),
            "{mean:?}"
        );
        assert_eq!(hold_for(7, h), hold_for(7, h));
    }
}
