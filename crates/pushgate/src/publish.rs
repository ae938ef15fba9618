//! `pushgate publish`: publishes through the gRPC ingress, so operators need no other
//! tool. With `--data` or `--file` it makes one `Publish` call; with neither, every
//! line of standard input is one publication on one `PublishStream`, and a summary
//! of the acks is printed at the end.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args};
use pushgate_grpc::pb::{self, pushgate_client::PushgateClient};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use crate::grpc::{status, GrpcArgs};

/// Publication requests in flight towards the gateway while reading standard input.
const STDIN_BUFFER: usize = 1024;

/// Flags of `pushgate publish`.
#[derive(Args)]
#[command(group(ArgGroup::new("target").required(true).args(["all", "channel", "user", "conn"])))]
#[command(group(ArgGroup::new("payload").args(["data", "file"])))]
pub struct PublishArgs {
    /// Every connection.
    #[arg(long)]
    all: bool,
    /// Subscribers of this channel (repeatable).
    #[arg(long, value_name = "NAME")]
    channel: Vec<String>,
    /// Every connection of this user (repeatable).
    #[arg(long, value_name = "USER")]
    user: Vec<String>,
    /// This connection id, e.g. n1-42 (repeatable).
    #[arg(long, value_name = "ID")]
    conn: Vec<String>,
    /// A connection that must not receive it.
    #[arg(long, value_name = "ID")]
    exclude: Option<String>,
    /// The payload. Without --data or --file, each line of standard input is one
    /// publication, sent on one stream.
    #[arg(long, short = 'd')]
    data: Option<String>,
    /// Read the payload from a file.
    #[arg(long, short = 'f', value_name = "PATH")]
    file: Option<PathBuf>,
    /// Send the payload as a binary frame instead of text.
    #[arg(long)]
    binary: bool,
    #[command(flatten)]
    grpc: GrpcArgs,
}

impl PublishArgs {
    fn target(&self) -> pb::Target {
        use pb::target::Kind;
        let names = |v: &Vec<String>| pb::Names { names: v.clone() };
        let kind = if self.all {
            Kind::All(true)
        } else if !self.channel.is_empty() {
            Kind::Channels(names(&self.channel))
        } else if !self.user.is_empty() {
            Kind::Users(names(&self.user))
        } else {
            Kind::Conns(names(&self.conn))
        };
        pb::Target { kind: Some(kind) }
    }

    fn publication(&self, payload: Vec<u8>) -> Result<pb::Publication> {
        use pb::publication::Payload;
        let payload = if self.binary {
            Payload::Binary(payload)
        } else {
            Payload::Text(
                String::from_utf8(payload).context("the payload is not UTF-8; add --binary")?,
            )
        };
        Ok(pb::Publication {
            target: Some(self.target()),
            payload: Some(payload),
            exclude: self.exclude.clone().unwrap_or_default(),
        })
    }
}

/// Runs `pushgate publish`. Returns whether every publication was accepted.
pub fn run(args: PublishArgs) -> Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut client = args.grpc.connect().await?;
        let payload = match (&args.data, &args.file) {
            (Some(d), _) => Some(d.clone().into_bytes()),
            (None, Some(p)) => {
                Some(std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?)
            }
            (None, None) => None,
        };
        match payload {
            Some(payload) => publish_one(&mut client, &args, payload).await,
            None => publish_stdin(&mut client, &args).await,
        }
    })
}

async fn publish_one(
    client: &mut PushgateClient<Channel>,
    args: &PublishArgs,
    payload: Vec<u8>,
) -> Result<bool> {
    let req = pb::PublishRequest {
        publication: Some(args.publication(payload)?),
    };
    match client.publish(args.grpc.request(req)?).await {
        Ok(r) => {
            let r = r.into_inner();
            println!(
                "{{\"enqueued\":{},\"skipped\":{},\"nodes_accepted\":{}}}",
                r.enqueued, r.skipped, r.nodes_accepted
            );
            Ok(true)
        }
        Err(s) => Err(status(s)),
    }
}

/// Streams standard input, one publication per line, and prints the acks' totals.
async fn publish_stdin(client: &mut PushgateClient<Channel>, args: &PublishArgs) -> Result<bool> {
    let (tx, rx) = tokio::sync::mpsc::channel(STDIN_BUFFER);
    // A plain thread reads standard input; a full channel makes it wait.
    let reader = std::thread::spawn({
        let binary = args.binary;
        let template = args.publication(Vec::new())?;
        move || -> Result<u64> {
            let mut seq = 0;
            for line in std::io::stdin().lock().lines() {
                let line = line.context("cannot read standard input")?;
                seq += 1;
                let mut p = template.clone();
                p.payload = Some(if binary {
                    pb::publication::Payload::Binary(line.into_bytes())
                } else {
                    pb::publication::Payload::Text(line)
                });
                let req = pb::PublishStreamRequest {
                    seq,
                    publication: Some(p),
                    idempotency_key: String::new(),
                };
                if tx.blocking_send(req).is_err() {
                    break; // the stream ended; the error is reported below
                }
            }
            Ok(seq)
        }
    });
    let mut acks = client
        .publish_stream(
            args.grpc
                .request(tokio_stream::wrappers::ReceiverStream::new(rx))?,
        )
        .await
        .map_err(status)?
        .into_inner();
    let (mut accepted, mut refused, mut enqueued, mut skipped) = (0u64, 0u64, 0u64, 0u64);
    let mut ended = None;
    while let Some(ack) = acks.next().await {
        match ack {
            Ok(ack) => match ack.result {
                Some(pb::publish_stream_reply::Result::Ok(r)) => {
                    accepted += 1;
                    enqueued += r.enqueued;
                    skipped += r.skipped;
                }
                Some(pb::publish_stream_reply::Result::Error(e)) => {
                    refused += 1;
                    eprintln!(
                        "line {}: refused ({:?}): {}",
                        ack.seq,
                        tonic::Code::from(e.code),
                        e.message
                    );
                }
                None => refused += 1,
            },
            Err(s) => {
                ended = Some(s);
                break;
            }
        }
    }
    let sent = match reader.join() {
        Ok(r) => r?,
        Err(_) => bail!("the standard-input reader panicked"),
    };
    println!(
        "{{\"sent\":{sent},\"accepted\":{accepted},\"refused\":{refused},\"enqueued\":{enqueued},\"skipped\":{skipped}}}"
    );
    if let Some(s) = ended {
        bail!(
            "the stream ended early ({:?}: {}); lines after the last ack were not accepted",
            s.code(),
            s.message()
        );
    }
    if accepted + refused != sent {
        bail!("{sent} lines sent but {} acked", accepted + refused);
    }
    Ok(refused == 0)
}
