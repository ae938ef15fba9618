//! The `pushgate` binary: parses the command line and runs a node, or publishes to one.

mod admin;
mod grpc;
mod history;
mod publish;
mod subscribe;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pushgate_server::{Config, Gateway, LogFormat, Sources};

/// jemalloc: per-connection allocations are small and many (tens of thousands of
/// connections per node); jemalloc's size classes and thread caches keep idle memory
/// per connection lower than glibc's malloc does (measured in docs/benchmarks.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A sharded, high-throughput WebSocket push gateway.
///
/// Clients connect to ws://<ws_addr>/ws; publishers POST to http://<http_addr>/publish
/// or call the gRPC API (pushgate.v1) on <grpc_addr>, e.g. with `pushgate publish`.
#[derive(Parser)]
#[command(name = "pushgate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a gateway node (ws 127.0.0.1:8080, HTTP API :8081, gRPC API :50051 by default).
    Serve(ConfigArgs),
    /// Publish through a gateway's gRPC API (one message, or one per line of stdin).
    ///
    /// `pushgate publish --channel news --data hello` makes one Publish call and prints
    /// {"enqueued":N,"skipped":M,"nodes_accepted":1}. Without --data or --file, each line
    /// of standard input is one publication, sent on one PublishStream; a summary of the
    /// acks is printed at the end. Exits 1 if anything was refused.
    Publish(publish::PublishArgs),
    /// Connect to a gateway as a WebSocket client and print each publication received.
    ///
    /// `pushgate subscribe --channel news` follows the channel and prints every
    /// publication as one line (the gateway's JSON frame; binary ones with the payload
    /// in base64); status goes to standard error. It reconnects and re-subscribes when
    /// the connection ends, until --count publications or a refusal.
    Subscribe(subscribe::SubscribeArgs),
    /// Operator calls through a gateway's gRPC API: stats, presence, online, disconnect,
    /// subscribe, unsubscribe. Each prints the reply as one JSON object.
    Admin(admin::AdminArgs),
    /// Print a page of a history channel through the gRPC API.
    ///
    /// `pushgate history --channel chat:1 --since 41` prints, as one JSON object, the
    /// stream's epoch and last offset and the kept publications after offset 41.
    History(history::HistoryArgs),
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (file + environment + flags) as TOML.
    Print(ConfigArgs),
    /// Validate a configuration file; exits 64 if it is invalid.
    Check {
        /// The TOML file to check.
        file: PathBuf,
    },
}

/// Where the configuration comes from; later sources win: defaults, file, environment
/// (`PUSHGATE_<FIELD>`), flags.
#[derive(Args)]
struct ConfigArgs {
    /// A TOML configuration file.
    #[arg(long, short = 'c', env = "PUSHGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Address for WebSocket clients.
    #[arg(long)]
    ws_addr: Option<String>,
    /// Address of the internal HTTP API (publish, metrics, health).
    #[arg(long)]
    http_addr: Option<String>,
    /// Address of the internal gRPC API (pushgate.v1, health, reflection).
    #[arg(long)]
    grpc_addr: Option<String>,
    /// Number of shards (0: one per core).
    #[arg(long)]
    shards: Option<String>,
    /// This node's id (prefix of connection ids).
    #[arg(long)]
    node_id: Option<String>,
    /// Any other setting, as FIELD=VALUE (repeatable); see docs/configuration.md.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
}

/// Exit code for an invalid configuration (EX_USAGE in sysexits.h).
const EXIT_CONFIG: u8 = 64;

impl ConfigArgs {
    /// The configuration from every source; an error names the file line, the
    /// environment variable or the flag that set the bad value.
    fn load(&self) -> Result<Config, String> {
        let mut s = Sources::new();
        if let Some(p) = &self.config {
            s.file(p).map_err(|e| e.to_string())?;
        }
        s.env(std::env::vars()).map_err(|e| e.to_string())?;
        let flags = [
            ("--ws-addr", "ws_addr", &self.ws_addr),
            ("--http-addr", "http_addr", &self.http_addr),
            ("--grpc-addr", "grpc_addr", &self.grpc_addr),
            ("--shards", "shards", &self.shards),
            ("--node-id", "node_id", &self.node_id),
        ];
        for (flag, field, value) in flags {
            if let Some(v) = value {
                s.flag(flag, field, v).map_err(|e| e.to_string())?;
            }
        }
        for kv in &self.set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("--set expects FIELD=VALUE, got {kv:?}"))?;
            let k = k.trim();
            s.flag(&format!("--set {k}"), k, v.trim())
                .map_err(|e| e.to_string())?;
        }
        s.finish().map_err(|e| e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config(ConfigCommand::Print(args)) => match args.load() {
            Ok(c) => {
                print!("{}", c.to_toml());
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&e),
        },
        Command::Config(ConfigCommand::Check { file }) => {
            match Sources::new().file(&file).and_then(|s| s.finish()) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => config_error(&e.to_string()),
            }
        }
        Command::Publish(args) => match publish::run(args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("pushgate: publish failed: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::History(args) => match history::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pushgate: history failed: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Admin(args) => match admin::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pushgate: admin call failed: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Subscribe(args) => match subscribe::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pushgate: subscribe failed: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve(args) => {
            let config = match args.load() {
                Ok(c) => c,
                Err(e) => return config_error(&e),
            };
            init_logging(config.log_format);
            match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("pushgate: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn config_error(msg: &str) -> ExitCode {
    eprintln!("pushgate: configuration error: {msg}");
    ExitCode::from(EXIT_CONFIG)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PUSHGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: a file or a log collector would
    // keep them as noise. NO_COLOR (no-color.org) turns them off there too.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    // The main runtime runs only the accept loop and the internal HTTP API; the shards
    // have threads of their own.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pushgate-main")
        .enable_all()
        .build()?;
    rt.block_on(async {
        let gateway = Gateway::start(config).await?;
        wait_for_signal().await;
        tracing::info!("shutting down; a second signal exits at once");
        tokio::spawn(async {
            wait_for_signal().await;
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        });
        gateway.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("can install a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
