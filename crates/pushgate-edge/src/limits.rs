//! Limits applied before a client gets a WebSocket: connections per node and per user
//! (counted here, answered 503 at the upgrade) and connection attempts per second per
//! source address (a token bucket per address in the accept loop, answered 429).
//!
//! The limits on an open connection live with the state they count: inbound frames
//! and bytes per second in the connection's read state (`inbound.rs`), subscriptions
//! in the shard's connection entry, message size in the frame reader. Every refusal is counted in `pushgate_limit_rejections_total{limit}`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use metrics::Counter;

use crate::handshake::Refusal;

/// `pushgate_limit_rejections_total` handles, resolved once.
pub(crate) struct LimitMetrics {
    pub(crate) connections: Counter,
    pub(crate) user_connections: Counter,
    pub(crate) connection_rate: Counter,
    pub(crate) inbound_rate: Counter,
    pub(crate) inbound_bytes: Counter,
    pub(crate) refresh_rate: Counter,
    pub(crate) subscriptions: Counter,
}

impl LimitMetrics {
    pub(crate) fn new() -> Self {
        let c = |limit: &'static str| metrics::counter!("pushgate_limit_rejections_total", "limit" => limit);
        LimitMetrics {
            connections: c("connections"),
            user_connections: c("user_connections"),
            connection_rate: c("connection_rate"),
            inbound_rate: c("inbound_rate"),
            inbound_bytes: c("inbound_bytes"),
            refresh_rate: c("refresh_rate"),
            subscriptions: c("subscriptions"),
        }
    }
}

/// Open connections on this node and per user, checked and counted at the upgrade.
pub(crate) struct Admission {
    max: usize,
    max_per_user: usize,
    open: AtomicUsize,
    /// Open connections per user; only filled when `max_per_user` is set.
    per_user: Mutex<AHashMap<Box<str>, u32>>,
}

impl Admission {
    pub(crate) fn new(max: usize, max_per_user: usize) -> Self {
        Admission {
            max,
            max_per_user,
            open: AtomicUsize::new(0),
            per_user: Mutex::new(AHashMap::new()),
        }
    }

    /// Whether per-user counts are kept (so a closing connection must give its user back).
    pub(crate) fn counts_users(&self) -> bool {
        self.max_per_user > 0
    }

    /// Takes a place for a connection of `user`, or says which limit refuses it.
    pub(crate) fn admit(&self, user: Option<&str>, m: &LimitMetrics) -> Result<(), Refusal> {
        let max = if self.max == 0 { usize::MAX } else { self.max };
        if self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_err()
        {
            m.connections.increment(1);
            return Err(Refusal::new(
                503,
                "connection limit of this node reached; retry later",
            ));
        }
        if let (true, Some(user)) = (self.counts_users(), user) {
            let mut per_user = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_user.entry(user.into()).or_insert(0);
            if *n as usize >= self.max_per_user {
                drop(per_user);
                self.open.fetch_sub(1, Ordering::AcqRel);
                m.user_connections.increment(1);
                return Err(Refusal::new(
                    503,
                    format!(
                        "user has {} connections, the most allowed",
                        self.max_per_user
                    ),
                ));
            }
            *n += 1;
        }
        Ok(())
    }

    /// Gives back the place taken by [`Admission::admit`].
    pub(crate) fn release(&self, user: Option<&str>) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        if let (true, Some(user)) = (self.counts_users(), user) {
            let mut per_user = self.per_user.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = per_user.get_mut(user) {
                *n -= 1;
                if *n == 0 {
                    per_user.remove(user);
                }
            }
        }
    }
}

/// Most source addresses tracked at once; beyond, new addresses are not limited
/// (a flood from that many addresses needs a defence in front of the gateway anyway).
const MAX_TRACKED: usize = 100_000;

/// Connection attempts per second per source address: a token bucket per address
/// (IPv6: per /64, which one host usually owns), holding `rate` tokens at most and
/// refilling `rate` per second. Owned by the accept loop, so no lock.
pub(crate) struct PerIpRate {
    rate: f64,
    buckets: AHashMap<IpAddr, Bucket>,
    last_sweep: Instant,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl PerIpRate {
    pub(crate) fn new(rate: u32) -> Self {
        PerIpRate {
            rate: rate.max(1) as f64,
            buckets: AHashMap::new(),
            last_sweep: Instant::now(),
        }
    }

    /// Takes a token for an attempt from `ip`; false when its bucket is empty.
    pub(crate) fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let key = match ip {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
                IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into())
            }
            IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().expect("mapped")),
            v4 => v4,
        };
        if now.duration_since(self.last_sweep) >= Duration::from_secs(1)
            || self.buckets.len() >= MAX_TRACKED
        {
            self.sweep(now);
        }
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&key) {
            return true;
        }
        let rate = self.rate;
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets buckets that have refilled (a full bucket is the same as none).
    fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        let full_after = Duration::from_secs(1);
        self.buckets
            .retain(|_, b| now.duration_since(b.last) < full_after);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_bucket_refills_and_is_per_address() {
        let mut r = PerIpRate::new(3);
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!((0..3).all(|_| r.allow(a, t0)));
        assert!(!r.allow(a, t0), "burst used up");
        assert!(r.allow(b, t0), "another address is not affected");
        assert!(
            r.allow(a, t0 + Duration::from_millis(400)),
            "one token back"
        );
        // IPv6 addresses of one /64 share a bucket.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!((0..3).all(|_| r.allow(v6("2001:db8::1"), t0)));
        assert!(!r.allow(v6("2001:db8::2"), t0));
        // Stale buckets are forgotten.
        r.allow(b, t0 + Duration::from_secs(5));
        assert_eq!(r.tracked(), 1);
    }

    #[test]
    fn admission_counts_node_and_user() {
        let m = LimitMetrics::new();
        let a = Admission::new(3, 2);
        a.admit(Some("u"), &m).unwrap();
        a.admit(Some("u"), &m).unwrap();
        assert_eq!(a.admit(Some("u"), &m).unwrap_err().status, 503);
        a.admit(None, &m).unwrap();
        assert_eq!(a.admit(Some("v"), &m).unwrap_err().status, 503, "node full");
        a.release(Some("u"));
        a.admit(Some("u"), &m).unwrap();
    }
}
