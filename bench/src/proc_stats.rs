//! Server (and self) resource usage from /proc: resident memory and CPU time.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ProcSample {
    /// VmRSS in KiB.
    pub rss_kb: u64,
    /// utime + stime in clock ticks.
    pub cpu_ticks: u64,
    /// On-CPU time of the live threads in ns (see [`cpu_ns`]); 0 if unknown.
    #[serde(default)]
    pub cpu_ns: u64,
}

impl ProcSample {
    /// CPU time between two samples in ms: the ns-precise per-thread figure
    /// when both samples have it, else the 10 ms-granular tick count.
    pub fn cpu_ms_since(&self, earlier: &ProcSample) -> f64 {
        if self.cpu_ns > 0 && earlier.cpu_ns > 0 {
            self.cpu_ns.saturating_sub(earlier.cpu_ns) as f64 / 1e6
        } else {
            ticks_to_ms(self.cpu_ticks.saturating_sub(earlier.cpu_ticks))
        }
    }
}

/// Clock ticks per second for /proc/PID/stat. Reading it needs sysconf
/// (unsafe FFI, forbidden in this workspace) or `getconf`; it is 100 on every
/// Linux we run on, and `getconf CLK_TCK` agrees on this machine.
pub const CLK_TCK: u64 = 100;

pub fn ticks_to_ms(ticks: u64) -> f64 {
    ticks as f64 * 1000.0 / CLK_TCK as f64
}

pub fn sample(pid: &str) -> Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is the server running?)"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    Ok(ProcSample {
        rss_kb: parse_vmrss(&status).context("no VmRSS line")?,
        cpu_ticks: parse_cpu_ticks(&stat).context("malformed stat")?,
        cpu_ns: cpu_ns(pid).unwrap_or(0),
    })
}

/// CPU time of `pid` in ns: the sum of `se.sum_exec_runtime` over its live
/// threads (/proc/PID/task/*/sched, ms with ns decimals). /proc/PID/stat
/// counts 10 ms ticks, too coarse for a burst that lasts a few hundred ms.
/// Threads that exited between two samples drop out of the sum, so this is
/// only meant for processes with long-lived threads (servers, our workers).
pub fn cpu_ns(pid: &str) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let sched = std::fs::read_to_string(task.ok()?.path().join("sched")).ok()?;
        total += parse_sum_exec_ns(&sched)?;
    }
    Some(total)
}

/// Own CPU time in ns, precise when /proc exposes per-thread runtimes.
pub fn self_cpu_ns() -> u64 {
    cpu_ns("self")
        .filter(|&n| n > 0)
        .unwrap_or_else(|| self_cpu_ticks() * (1_000_000_000 / CLK_TCK))
}

fn parse_sum_exec_ns(sched: &str) -> Option<u64> {
    let line = sched
        .lines()
        .find(|l| l.starts_with("se.sum_exec_runtime"))?;
    let ms = line.split(':').nth(1)?.trim();
    let (whole, frac) = ms.split_once('.').unwrap_or((ms, "0"));
    // Parse as integers: f64 would lose ns after a few days of runtime.
    let frac6: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    Some(whole.parse::<u64>().ok()? * 1_000_000 + frac6.parse::<u64>().ok()?)
}

/// Optional variant for when no PID was given: all zeros.
pub fn sample_opt(pid: Option<&str>) -> Result<ProcSample> {
    pid.map_or(Ok(ProcSample::default()), sample)
}

pub fn self_cpu_ticks() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_cpu_ticks(&s))
        .unwrap_or(0)
}

fn parse_vmrss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// utime and stime are fields 14 and 15 of /proc/PID/stat. The command name
/// (field 2) may contain spaces, so count from after its closing ')'.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace();
    // After ')' the first field is #3 (state); utime is #14 → index 11.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let stat =
            "1234 (my server) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0 1 1 1";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
    }

    #[test]
    fn parses_vmrss() {
        let st = "Name:\tx\nVmPeak:\t 10 kB\nVmRSS:\t    5120 kB\nThreads: 1\n";
        assert_eq!(parse_vmrss(st), Some(5120));
    }

    #[test]
    fn parses_sched_runtime() {
        let s = "head (1, #threads: 1)\n---\nse.exec_start  :  5.0\nse.sum_exec_runtime                          :           383.894498\n";
        assert_eq!(parse_sum_exec_ns(s), Some(383_894_498));
        assert_eq!(
            parse_sum_exec_ns("se.sum_exec_runtime : 2.5\n"),
            Some(2_500_000)
        );
        assert_eq!(parse_sum_exec_ns("nothing"), None);
    }

    #[test]
    fn cpu_ms_prefers_ns() {
        let a = ProcSample {
            rss_kb: 0,
            cpu_ticks: 1,
            cpu_ns: 1_000_000,
        };
        let b = ProcSample {
            rss_kb: 0,
            cpu_ticks: 2,
            cpu_ns: 3_500_000,
        };
        assert_eq!(b.cpu_ms_since(&a), 2.5);
        let c = ProcSample { cpu_ns: 0, ..b };
        assert_eq!(c.cpu_ms_since(&a), 10.0);
    }

    #[test]
    fn samples_self() {
        let s = sample(&std::process::id().to_string()).unwrap();
        assert!(s.rss_kb > 0);
    }
}
