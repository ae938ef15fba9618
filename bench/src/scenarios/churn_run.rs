//! A churn run beside a scenario: the churn driver and the sampler of the
//! server's connection gauge and RSS, and how they are settled afterwards.

use super::*;

/// A churn run in progress: the churn driver and a once-a-second sampler of
/// the server's gauge and RSS, both tasks on the coordinator's thread.
pub(super) struct ChurnRun {
    pub(super) stats: Rc<RefCell<ChurnStats>>,
    pub(super) stop: Rc<Cell<bool>>,
    pub(super) driver: tokio::task::JoinHandle<()>,
    pub(super) sampler: tokio::task::JoinHandle<Vec<TimelinePoint>>,
    pub(super) report: ChurnReport,
}

impl ChurnRun {
    pub(super) async fn start(
        cfg: &RunConfig,
        pub_ep: &Endpoint,
        pid: Option<&str>,
        messages: usize,
        rss_before_kb: u64,
    ) -> Result<Self> {
        let connected = scrape_opt(pub_ep).await;
        let rss = |s: Result<ProcSample>| s.map_or(0, |s| s.rss_kb);
        let mut report = ChurnReport {
            rate: cfg.churn_rate,
            hold_ms: cfg.churn_hold_ms,
            gauge_connected: connected.as_ref().map(|s| s.connections),
            rss_connected_kb: rss(proc_stats::sample_opt(pid)),
            ..Default::default()
        };
        report.rss_before_kb = rss_before_kb;
        let conn_cfg = Rc::new(WorkerConfig {
            ws: Endpoint::parse(&cfg.ws, "ws")?,
            conns: 0,
            first_index: 0,
            max_seq: messages,
            size: cfg.size,
            no_read: false,
            deflate: false,
            pusher: false,
            channels: None,
            handshake_concurrency: cfg.handshake_concurrency,
            connect_timeout: Duration::from_secs(cfg.connect_timeout_s),
        });
        let stats = Rc::new(RefCell::new(ChurnStats::default()));
        let stop = Rc::new(Cell::new(false));
        let driver = tokio::task::spawn_local(churn::drive(
            churn::Churn {
                conn_cfg,
                rate: cfg.churn_rate,
                total: (cfg.churn_rate * cfg.duration_s).round() as u64,
                hold: Duration::from_millis(cfg.churn_hold_ms),
                // Past the stable clients' indexes: other source addresses.
                first_index: cfg.conns + cfg.slow + 1,
            },
            stats.clone(),
            stop.clone(),
        ));
        let sampler = tokio::task::spawn_local(sample_timeline(
            pub_ep.clone(),
            pid.map(str::to_string),
            stats.clone(),
            stop.clone(),
        ));
        Ok(Self {
            stats,
            stop,
            driver,
            sampler,
            report,
        })
    }

    /// After publishing: let the churn finish, then wait (≤ 10 s) until the
    /// gauge is back at the stable clients' count.
    pub(super) async fn stop(
        self,
        pub_ep: &Endpoint,
        pid: Option<&str>,
        stable: f64,
        scrape_before: Option<Scrape>,
    ) -> (ChurnReport, Option<Scrape>) {
        let _ = self.driver.await;
        self.stop.set(true);
        let timeline = self.sampler.await.unwrap_or_default();
        let mut r = self.report;
        r.gauge_before = scrape_before.as_ref().map(|s| s.connections);
        {
            let s = self.stats.borrow();
            r.attempted = s.attempted;
            r.opened = s.opened;
            r.failed = s.failed;
            let secs = s.last_ns.saturating_sub(s.first_ns) as f64 / 1e9;
            r.opened_per_sec = s.opened as f64 / secs.max(1e-9);
            r.closed_clean = s.closed_clean;
            r.clean_unanswered = s.clean_unanswered;
            r.closed_fin = s.closed_fin;
            r.closed_rst = s.closed_rst;
            r.closed_by_server = s.closed_by_server;
            r.max_open = s.max_open;
            if !s.handshake_us.is_empty() {
                r.handshake_p50_us = Some(s.handshake_us.value_at_quantile(0.5));
                r.handshake_p99_us = Some(s.handshake_us.value_at_quantile(0.99));
                r.handshake_max_us = Some(s.handshake_us.max());
            }
            r.errors = s.errors.clone();
        }
        let gauges: Vec<f64> = timeline.iter().filter_map(|p| p.gauge).collect();
        r.gauge_during_min = gauges.iter().copied().reduce(f64::min);
        r.gauge_during_max = gauges.iter().copied().reduce(f64::max);
        r.rss_during_max_kb = timeline.iter().map(|p| p.rss_kb).max().unwrap_or(0);
        r.timeline = timeline;
        let target = r.gauge_connected.unwrap_or(stable);
        let (g, ms) = settle(pub_ep, target).await;
        r.gauge_after_churn = g.as_ref().map(|s| s.connections);
        r.settle_after_churn_ms = g.is_some().then_some(ms);
        r.rss_after_churn_kb = proc_stats::sample_opt(pid).map_or(0, |s| s.rss_kb);
        (r, scrape_before)
    }
}

/// Every second until `stop`: the gauge, the server's RSS and how many
/// churn connections are open.
pub(super) async fn sample_timeline(
    ep: Endpoint,
    pid: Option<String>,
    stats: Rc<RefCell<ChurnStats>>,
    stop: Rc<Cell<bool>>,
) -> Vec<TimelinePoint> {
    let t0 = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Vec::new();
    while !stop.get() {
        ticker.tick().await;
        let gauge = scrape_opt(&ep).await.map(|s| s.connections);
        out.push(TimelinePoint {
            t_s: t0.elapsed().as_secs_f64(),
            gauge,
            rss_kb: proc_stats::sample_opt(pid.as_deref()).map_or(0, |s| s.rss_kb),
            churn_open: stats.borrow().open_now,
        });
    }
    out
}

/// Poll the gauge every 100 ms until it is at most `target`, for at most
/// 10 s. Returns the last scrape and the time waited (ms).
pub(super) async fn settle(ep: &Endpoint, target: f64) -> (Option<Scrape>, u64) {
    let t0 = tokio::time::Instant::now();
    loop {
        let s = scrape_opt(ep).await;
        let done = s.as_ref().is_none_or(|s| s.connections <= target);
        if done || t0.elapsed() >= Duration::from_secs(10) {
            return (s, t0.elapsed().as_millis() as u64);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// After the stable clients left: gauge back to its value before the run?
/// Also: the opened/closed counters' change over the whole run.
pub(super) async fn after_close(
    c: &mut ChurnReport,
    before: Option<&Scrape>,
    ep: &Endpoint,
    pid: Option<&str>,
) {
    let (g, ms) = settle(ep, c.gauge_before.unwrap_or(0.0)).await;
    c.gauge_after_close = g.as_ref().map(|s| s.connections);
    c.settle_after_close_ms = g.is_some().then_some(ms);
    c.rss_after_close_kb = proc_stats::sample_opt(pid).map_or(0, |s| s.rss_kb);
    if let (Some(b), Some(a)) = (before, g.as_ref()) {
        c.opened_total_delta = Some(a.opened_total - b.opened_total);
        c.closed_total_delta = a
            .closed_total
            .iter()
            .map(|(k, v)| (k.clone(), v - b.closed_total.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, d)| *d != 0.0)
            .collect();
    }
}
