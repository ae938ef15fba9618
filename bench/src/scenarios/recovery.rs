//! The recovery scenario (history, issue #11): N clients follow one history
//! channel, disconnect, M publications are made, and all reconnect at once
//! with `since` = the last offset they received. Measured: the time until
//! every client has received the M missed publications (exactly once, in
//! order: checked by each client, see `recovery_client.rs`), and the
//! server's CPU per recovered publication, gross and net of a control
//! reconnect of the same clients without `since`.

use super::*;

use crate::history_report::RecoveryReport;
use crate::recovery_client::Tally;

/// Every phase of every worker must finish within this (the clients are
/// local: a phase that takes longer is a failure to report, not to wait for).
const PHASE_MS: u64 = 120_000;

pub(super) async fn run(cfg: &RunConfig) -> Result<RunResult> {
    Endpoint::parse(&cfg.ws, "ws")?;
    let pub_ep = Endpoint::parse(&cfg.publish, "http")?;
    let pid = cfg.pid.as_deref();
    let path = format!("{}?channel={}", pub_ep.path_only(), cfg.history_channel);
    let (w, m) = (cfg.warmup as usize, cfg.missed as usize);
    if m == 0 {
        bail!("--missed must be at least 1");
    }
    let scrape_before = scrape_opt(&pub_ep).await;
    let before_connect = proc_stats::sample_opt(pid)?;

    let mut workers = spawn(cfg)?;
    let n_workers = workers.len() as u64;
    let ready = phase(&mut workers, None, "ready", cfg).await?;
    let connected = ready.subscribed;
    if connected == 0 {
        bail!("no client subscribed: {:?}", ready.errors);
    }
    if ready.position_mismatch > 0 {
        bail!(
            "{} replies without a position for {}: is history on for it? {:?}",
            ready.position_mismatch,
            cfg.history_channel,
            ready.errors
        );
    }
    if ready.epochs.len() != 1 || ready.base_min != ready.base_max {
        bail!(
            "clients start from different positions (epochs {:?}, offsets {}..{}): \
             is someone else publishing to {}?",
            ready.epochs,
            ready.base_min,
            ready.base_max,
            cfg.history_channel
        );
    }
    let before_pub = proc_stats::sample_opt(pid)?;

    // Warm-ups, received live: each client's last position is a real offset.
    let paths = |n: usize| vec![Some(path.clone()); n];
    let warm_pub = publish(
        &pub_ep,
        None,
        &paths(w),
        cfg.size,
        1,
        cfg.pipeline,
        cfg.respond_async,
        None,
        None,
    )
    .await;
    let warm = phase(&mut workers, Some(&format!("warm {PHASE_MS}")), "warm", cfg).await?;

    // Everyone leaves; the publications are made once the gateway has seen
    // every connection go (its gauge back to 0).
    let closed = phase(&mut workers, Some("close"), "closed", cfg).await?;
    let (gauge, settle_ms) = settle(&pub_ep, 0.0).await;
    let missed = publish(
        &pub_ep,
        None,
        &paths(m),
        cfg.size,
        1,
        cfg.pipeline,
        cfg.respond_async,
        None,
        None,
    )
    .await;
    if missed.count() != m as u64 {
        bail!(
            "only {} of {m} missed publications accepted: {:?}",
            missed.count(),
            missed.first_error
        );
    }

    // The mass reconnect.
    // Workers' CPU so far: what they spend reconnecting is reported apart.
    let away = closed.cpu_ns;
    let s0 = proc_stats::sample_opt(pid)?;
    let t0 = now_ns();
    let cmd = format!("recover {}", cfg.deadline_s * 1000);
    let rec = phase(&mut workers, Some(&cmd), "recovered", cfg).await?;
    let s1 = proc_stats::sample_opt(pid)?;
    let rec_cpu_ms = s1.cpu_ms_since(&s0);
    let scrape_after = scrape_opt(&pub_ep).await;

    // Control: the same reconnect, without since.
    phase(&mut workers, Some("close"), "closed", cfg).await?;
    settle(&pub_ep, 0.0).await;
    let c0 = proc_stats::sample_opt(pid)?;
    let t1 = now_ns();
    let cmd = format!("plain {}", cfg.deadline_s * 1000);
    let plain = phase(&mut workers, Some(&cmd), "plain", cfg).await?;
    let c1 = proc_stats::sample_opt(pid)?;
    for mut wk in workers {
        let _ = wk.stdin.write_all(b"exit\n").await;
        wk.reap().await;
    }

    let ms_after = |t: u64, v: &[u64]| -> Option<f64> {
        let all = v.iter().all(|&x| x > 0) && !v.is_empty();
        all.then(|| {
            v.iter()
                .max()
                .map_or(0.0, |&x| x.saturating_sub(t) as f64 / 1e6)
        })
    };
    let mut done: Vec<u64> = rec
        .done_ns
        .iter()
        .filter(|&&x| x > 0)
        .map(|&x| x.saturating_sub(t0) / 1000)
        .collect();
    done.sort_unstable();
    let delivered = rec.delivered;
    let recovered_pubs = delivered.max(1) as f64;
    let ctl_cpu_ms = c1.cpu_ms_since(&c0);
    let delta = |k: &str| -> Option<f64> {
        let a = scrape_after.as_ref()?.history_recoveries.get(k).copied();
        let b = scrape_before.as_ref()?.history_recoveries.get(k).copied();
        Some(a.unwrap_or(0.0) - b.unwrap_or(0.0))
    };
    let report = RecoveryReport {
        channel: cfg.history_channel.clone(),
        workers: n_workers,
        clients: connected,
        warmup: cfg.warmup,
        missed: cfg.missed,
        reconnect_concurrency: cfg.reconnect_concurrency as u64,
        warm_published: warm_pub.count(),
        warm_done: warm.done,
        gauge_after_close: gauge.map(|g| g.connections),
        settle_ms,
        reconnected: rec.connected,
        subscribed: rec.subscribed,
        recovered_clients: rec.done,
        listed_recovered: rec.listed_recovered,
        listed_unrecovered: rec.listed_unrecovered,
        position_mismatch: rec.position_mismatch,
        expected: rec.expected,
        delivered,
        dups: rec.dups,
        gaps: rec.gaps,
        seq_mismatch: rec.seq_mismatch,
        early: rec.early,
        extras: rec.extras,
        failed: rec.failed,
        all_connected_ms: ms_after(t0, &rec.connected_ns),
        all_subscribed_ms: ms_after(t0, &rec.subscribed_ns),
        all_recovered_ms: ms_after(t0, &rec.done_ns),
        recovered_p50_ms: percentile(&done, 0.50).map(|v| v as f64 / 1000.0),
        recovered_p99_ms: percentile(&done, 0.99).map(|v| v as f64 / 1000.0),
        server_cpu_ms: rec_cpu_ms,
        cpu_us_per_pub: rec_cpu_ms * 1000.0 / recovered_pubs,
        control_subscribed: plain.subscribed,
        control_all_subscribed_ms: ms_after(t1, &plain.subscribed_ns),
        control_cpu_ms: ctl_cpu_ms,
        net_cpu_us_per_pub: (rec_cpu_ms - ctl_cpu_ms) * 1000.0 / recovered_pubs,
        client_cpu_ms: rec.cpu_ns.saturating_sub(away) as f64 / 1e6,
        server_recovered: delta("recovered"),
        server_unrecovered: delta("unrecovered"),
        rss_before_recover_kb: s0.rss_kb,
        rss_after_recover_kb: s1.rss_kb,
    };

    let mut errors = ready.errors;
    for e in warm
        .errors
        .into_iter()
        .chain(rec.errors)
        .chain(plain.errors)
    {
        if !errors.contains(&e) {
            errors.push(e);
        }
    }
    errors.extend(warm_pub.first_error.clone());
    errors.truncate(10);
    let mut r = RunResult {
        target: cfg.target.clone(),
        scenario: cfg.scenario.name().into(),
        timestamp_ns: now_ns(),
        conns: cfg.conns as u64,
        connected,
        handshake_failed: cfg.conns as u64 - connected,
        size: cfg.size.max(payload::MIN_SIZE) as u64,
        published: warm_pub.count() + missed.count(),
        publish_rejected: warm_pub.rejected + missed.rejected,
        publish_errors: warm_pub.errors + missed.errors,
        expected: report.expected,
        delivered,
        lost: report.expected.saturating_sub(delivered),
        dups: report.dups,
        server_eofs: 0,
        elapsed_s: report.all_recovered_ms.map(|ms| ms / 1000.0),
        server_cpu_ms: Some(rec_cpu_ms),
        cpu_us_per_delivery: Some(report.cpu_us_per_pub),
        rss_before_kb: Some(before_connect.rss_kb),
        rss_connected_kb: Some(before_pub.rss_kb),
        rss_after_kb: Some(s1.rss_kb),
        client_cpu_ms: report.client_cpu_ms,
        coordinator_cpu_ms: proc_stats::self_cpu_ns() as f64 / 1e6,
        errors,
        ..Default::default()
    };
    if let Some(s) = r.elapsed_s {
        r.deliveries_per_sec = Some(delivered as f64 / s);
    }
    r.recovery = Some(report);
    Ok(r)
}

/// Worker processes for `cfg.conns` clients (several when over
/// `--per-worker`, or `--workers`).
fn spawn(cfg: &RunConfig) -> Result<Vec<WorkerHandle>> {
    let total = cfg.conns;
    let n = total
        .div_ceil(cfg.per_worker.max(1))
        .max(cfg.min_workers)
        .clamp(1, total.max(1));
    let exe = std::env::current_exe()?;
    let mut out = Vec::with_capacity(n);
    let mut idx = 0;
    for k in 0..n {
        let conns = total / n + usize::from(k < total % n);
        let args: Vec<String> = [
            "recovery-worker",
            "--ws",
            &cfg.ws,
            "--conns",
            &conns.to_string(),
            "--first-index",
            &idx.to_string(),
            "--channel",
            &cfg.history_channel,
            "--warmup",
            &cfg.warmup.to_string(),
            "--missed",
            &cfg.missed.to_string(),
            "--handshake-concurrency",
            &cfg.handshake_concurrency.to_string(),
            // Each worker reconnects its share: the total stays as asked.
            "--reconnect-concurrency",
            &cfg.reconnect_concurrency.div_ceil(n).to_string(),
            "--connect-timeout",
            &cfg.connect_timeout_s.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        out.push(WorkerHandle::spawn(&exe, args, idx, conns, 0)?);
        idx += conns;
    }
    Ok(out)
}

/// Send `cmd` (if any) to every worker, then read each one's `reply` and
/// add them up (the per-client times are concatenated).
async fn phase(
    workers: &mut [WorkerHandle],
    cmd: Option<&str>,
    reply: &str,
    cfg: &RunConfig,
) -> Result<Tally> {
    if let Some(c) = cmd {
        for w in workers.iter_mut() {
            w.stdin.write_all(format!("{c}\n").as_bytes()).await?;
            w.stdin.flush().await?;
        }
    }
    let timeout =
        Duration::from_millis(PHASE_MS.max(cfg.deadline_s * 1000)) + cfg.ready_timeout(cfg.conns);
    let mut t = Tally::default();
    for w in workers.iter_mut() {
        let x: Tally = w.read_msg(reply, timeout).await?;
        add(&mut t, x);
    }
    Ok(t)
}

fn add(t: &mut Tally, x: Tally) {
    let first = t.clients == 0;
    t.clients += x.clients;
    t.failed += x.failed;
    t.open += x.open;
    t.connected += x.connected;
    t.subscribed += x.subscribed;
    t.done += x.done;
    for e in x.epochs {
        if !t.epochs.contains(&e) {
            t.epochs.push(e);
        }
    }
    t.base_min = if first {
        x.base_min
    } else {
        t.base_min.min(x.base_min)
    };
    t.base_max = t.base_max.max(x.base_max);
    t.listed_recovered += x.listed_recovered;
    t.listed_unrecovered += x.listed_unrecovered;
    t.position_mismatch += x.position_mismatch;
    t.expected += x.expected;
    t.delivered += x.delivered;
    t.dups += x.dups;
    t.gaps += x.gaps;
    t.seq_mismatch += x.seq_mismatch;
    t.early += x.early;
    t.extras += x.extras;
    t.connected_ns.extend(x.connected_ns);
    t.subscribed_ns.extend(x.subscribed_ns);
    t.done_ns.extend(x.done_ns);
    t.cpu_ns += x.cpu_ns;
    for e in x.errors {
        if !t.errors.contains(&e) {
            t.errors.push(e);
        }
    }
}
