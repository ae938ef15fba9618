//! How long a failed webhook batch waits before its next attempt: doubling from
//! `base`, capped, a fixed number of attempts. No jitter: each app has one sender, so
//! there is no herd of retries to spread.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first failure.
    pub base: Duration,
    /// Longest wait.
    pub cap: Duration,
    /// Attempts in all, the first included; then the batch is dropped.
    pub attempts: u32,
}

impl Default for Backoff {
    /// 1 s, 2 s, 4 s, 8 s, 16 s, 30 s, 30 s: eight attempts over about 91 s.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
            attempts: 8,
        }
    }
}

impl Backoff {
    /// The wait after failed attempt number `failed` (1 = the first), or `None` when
    /// no attempt is left.
    pub fn after(&self, failed: u32) -> Option<Duration> {
        if failed >= self.attempts {
            return None;
        }
        let factor = 1u32.checked_shl(failed - 1).unwrap_or(u32::MAX);
        Some(self.base.saturating_mul(factor).min(self.cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_gives_up() {
        let b = Backoff::default();
        let waits: Vec<u64> = (1..=8)
            .map_while(|n| b.after(n))
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.after(8), None);
        let one = Backoff { attempts: 1, ..b };
        assert_eq!(one.after(1), None);
        let huge = Backoff { attempts: 100, ..b };
        assert_eq!(huge.after(90), Some(b.cap), "no overflow");
    }
}
