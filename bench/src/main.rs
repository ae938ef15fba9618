//! pushgate-bench: load generator for WebSocket push gateways.
//!
//! Subcommands:
//!   run       drive one already-running server through one scenario
//!   worker    (internal) hold client connections; started by `run`
//!   recovery-worker  (internal) the recovery scenario's clients
//!   report    summarize result JSON files into a comparison table
//!   report-cluster  the tables of bench/cluster.sh's results
//!   report-history  history on vs off, and the recovery runs
//!   presence  presence join/leave throughput through running nodes
//!   free-port print a free loopback TCP port (for the shell scripts)
//!
//! See bench/README.md for the scenarios and the scripts that run them.

mod churn;
mod client;
mod cluster;
mod conn;
mod deflate;
mod floor;
mod frame;
mod grpc;
mod history_frame;
mod history_report;
mod metrics;
mod payload;
mod presence;
mod proc_stats;
mod publisher;
mod pusher;
mod recovery_client;
mod recv;
mod report;
mod scenarios;
mod target;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage:
  pushgate-bench run --scenario burst|latency|idle|slow|channels|sustained|churn|cluster
                              |burst-channel|recovery
        --target NAME
        --ws ws://127.0.0.1:P/ws[,ws://...] (or http://127.0.0.1:P/sse: SSE clients) --publish http://127.0.0.1:P/publish
        [--pid PID[,PID...]] [--node-http http://127.0.0.1:H[,...]] [--redis-pid PID]
        [--grpc http://127.0.0.1:G (burst/cluster: publish on one gRPC PublishStream)]
        [--conns N] [--messages M] [--size B] [--duration S] [--rate R]
        [--publishers P] [--pipeline N] [--respond-async (publish requests carry
        `Prefer: respond-async`: answered once accepted, 202)] [--per-worker N] [--workers W] [--settle S]
        [--quiet-ms MS] [--deadline S] [--slow N] [--channels C]
        [--channels-per-conn K] [--handshake-concurrency N]
        [--connect-timeout S] [--churn-rate R] [--churn-hold-ms MS] [--json FILE]
        [--payload json (pad with JSON records)] [--deflate (clients offer
        permessage-deflate and inflate what they get)]
        [--pusher ID:KEY:SECRET (the Pusher protocol: --ws ws://…/app/KEY?protocol=7,
        --publish http://…/apps/ID/events; broadcast scenarios)]
        recovery: [--history-channel C] [--warmup W] [--missed M]
                  [--reconnect-concurrency N (0 = all at once)]
  pushgate-bench report FILE.json...
  pushgate-bench report-history FILE.json...
  pushgate-bench report-cluster FILE.json...
  pushgate-bench presence --ws ws://...[,ws://...] --node-http http://...[,...]
        [--conns N] [--channels C] [--cycles K] [--deadline S] [--json FILE]
  pushgate-bench free-port";

/// `--key value` / `--flag` options.
struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Result<Self> {
        let mut m = HashMap::new();
        let mut it = args.iter().peekable();
        while let Some(a) = it.next() {
            let key = a
                .strip_prefix("--")
                .with_context(|| format!("unexpected argument {a:?}\n{USAGE}"))?;
            let val = match it.peek() {
                Some(v) if !v.starts_with("--") => it.next().cloned().unwrap_or_default(),
                _ => "true".to_string(),
            };
            m.insert(key.to_string(), val);
        }
        Ok(Self(m))
    }

    fn str(&self, k: &str) -> Option<String> {
        self.0.get(k).cloned()
    }

    fn req(&self, k: &str) -> Result<String> {
        self.str(k)
            .with_context(|| format!("--{k} is required\n{USAGE}"))
    }

    fn get<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.0.get(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| anyhow::anyhow!("--{k} {v:?}: {e}")),
        }
    }

    fn flag(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        bail!("{USAGE}");
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "run" => cmd_run(Opts::parse(rest)?),
        "worker" => cmd_worker(Opts::parse(rest)?),
        "recovery-worker" => cmd_recovery_worker(Opts::parse(rest)?),
        "report" => {
            print!("{}", report::summarize(rest)?);
            Ok(())
        }
        "report-cluster" => {
            print!("{}", cluster::summarize(rest)?);
            Ok(())
        }
        "report-history" => {
            print!("{}", history_report::summarize(rest)?);
            Ok(())
        }
        "presence" => cmd_presence(Opts::parse(rest)?),
        "free-port" => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            println!("{}", l.local_addr()?.port());
            Ok(())
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("unknown command {cmd:?}\n{USAGE}"),
    }
}

fn cmd_run(o: Opts) -> Result<()> {
    let scenario = scenarios::Scenario::parse(&o.req("scenario")?)?;
    use scenarios::Scenario as S;
    let default_conns = match scenario {
        S::Latency | S::Slow | S::Churn => 1_000,
        S::Idle => 19_000,
        S::Cluster => 300,
        _ => 10_000,
    };
    let (default_duration, default_rate) = match scenario {
        S::Sustained => (30.0, 100.0),
        S::Churn => (60.0, 10.0),
        _ => (20.0, 100.0),
    };
    let list = |k: &str| -> Vec<String> {
        o.str(k).map_or(Vec::new(), |v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
    };
    let ws_urls = list("ws");
    let pids = list("pid");
    let cfg = scenarios::RunConfig {
        scenario,
        target: o.str("target").unwrap_or_else(|| "server".into()),
        ws: ws_urls.first().cloned().context("--ws is required")?,
        ws_urls,
        publish: o.req("publish")?,
        pid: pids.first().cloned(),
        pids,
        node_http: list("node-http"),
        redis_pid: o.str("redis-pid"),
        grpc: o.str("grpc"),
        conns: o.get("conns", default_conns)?,
        messages: o.get("messages", 100)?,
        size: o.get("size", 100)?,
        duration_s: o.get("duration", default_duration)?,
        rate: o.get("rate", default_rate)?,
        // A few pipelined keep-alive connections: one connection waiting
        // for each response caps a burst at one publication per round trip
        // while the server is busy fanning out.
        publishers: o.get("publishers", 4)?,
        pipeline: o.get("pipeline", 32)?,
        respond_async: o.flag("respond-async"),
        // Open-files limit is 20,000 per process; leave room for stdio etc.
        per_worker: o.get("per-worker", 19_500)?,
        min_workers: o.get("workers", 1)?,
        settle_s: o.get("settle", 3.0)?,
        quiet_ms: o.get("quiet-ms", 3_000)?,
        deadline_s: o.get("deadline", 120)?,
        slow: if scenario == S::Slow {
            o.get("slow", 100)?
        } else {
            0
        },
        // burst-channel: every connection on the one channel.
        channels: if scenario == S::BurstChannel {
            1
        } else {
            o.get("channels", 1_000)?
        },
        channels_per_conn: if scenario == S::BurstChannel {
            1
        } else {
            o.get("channels-per-conn", 5)?
        },
        handshake_concurrency: o.get("handshake-concurrency", 128)?,
        connect_timeout_s: o.get("connect-timeout", 15)?,
        churn_rate: o.get("churn-rate", 500.0)?,
        churn_hold_ms: o.get("churn-hold-ms", 1_000)?,
        history_channel: o
            .str("history-channel")
            .unwrap_or_else(|| "recovery".into()),
        warmup: o.get("warmup", 10)?,
        missed: o.get("missed", 100)?,
        // Every client at once by default: the reconnect after a load
        // balancer reload or a node restart.
        reconnect_concurrency: o.get("reconnect-concurrency", 0)?,
        deflate: o.flag("deflate"),
        pusher: o
            .str("pusher")
            .map(|s| pusher::App::parse(&s))
            .transpose()?,
    };
    // `--payload json`: JSON records as padding (the compression scenario).
    payload::set_json_padding(o.str("payload").as_deref() == Some("json"));
    if cfg.rate <= 0.0 || cfg.duration_s <= 0.0 || cfg.churn_rate <= 0.0 {
        bail!("--rate, --duration and --churn-rate must be positive");
    }
    let result = scenarios::run(cfg)?;
    let json = serde_json::to_string_pretty(&result)?;
    if let Some(path) = o.str("json") {
        if let Some(dir) = std::path::Path::new(&path).parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &json).with_context(|| format!("writing {path}"))?;
    } else {
        eprintln!("{json}");
    }
    if !result.errors.is_empty() {
        eprintln!("errors seen: {:?}", result.errors);
    }
    if !o.flag("no-header") {
        println!("{}", report::ROW_HEADER);
    }
    println!("{}", report::markdown_row(&result));
    if let Some(s) = report::churn_summary(&result) {
        println!("{s}");
    }
    if let Some(s) = cluster::summary(&result) {
        println!("{s}");
    }
    if let Some(s) = history_report::recovery_summary(&result) {
        println!("{s}");
    }
    Ok(())
}

fn cmd_recovery_worker(o: Opts) -> Result<()> {
    recovery_client::run_worker(recovery_client::RecoveryWorkerConfig {
        ws: target::Endpoint::parse(&o.req("ws")?, "ws")?,
        conns: o.get("conns", 1)?,
        first_index: o.get("first-index", 0)?,
        channel: o.req("channel")?,
        warmup: o.get("warmup", 10)?,
        missed: o.get("missed", 100)?,
        handshake_concurrency: o.get("handshake-concurrency", 128)?,
        reconnect_concurrency: o.get("reconnect-concurrency", 0)?,
        connect_timeout: Duration::from_secs(o.get("connect-timeout", 15)?),
    })
}

fn cmd_presence(o: Opts) -> Result<()> {
    let list =
        |k: &str| -> Result<Vec<String>> { Ok(o.req(k)?.split(',').map(str::to_owned).collect()) };
    let args = presence::Args {
        ws: list("ws")?,
        http: list("node-http")?,
        conns: o.get("conns", 1000)?,
        channels: o.get("channels", 10)?,
        cycles: o.get("cycles", 3)?,
        deadline: Duration::from_secs(o.get("deadline", 60)?),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(presence::run(args))?;
    let json = serde_json::to_string_pretty(&report)?;
    match o.str("json") {
        Some(path) => std::fs::write(path, json)?,
        None => println!("{json}"),
    }
    Ok(())
}

fn cmd_worker(o: Opts) -> Result<()> {
    let channels = if o.flag("channels") {
        Some((o.get("channels", 1000)?, o.get("channels-per-conn", 5)?))
    } else {
        None
    };
    client::run_worker(client::WorkerConfig {
        ws: target::Endpoint::parse_client(&o.req("ws")?)?,
        conns: o.get("conns", 1)?,
        first_index: o.get("first-index", 0)?,
        max_seq: o.get("max-seq", 0)?,
        size: o.get("size", 0)?,
        no_read: o.flag("no-read"),
        deflate: o.flag("deflate"),
        pusher: o.flag("pusher"),
        channels,
        handshake_concurrency: o.get("handshake-concurrency", 128)?,
        connect_timeout: Duration::from_secs(o.get("connect-timeout", 15)?),
    })
}
