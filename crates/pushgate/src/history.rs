//! `pushgate history --channel C`: a page of a history channel, through the gRPC
//! `History` call, printed as one JSON object (the shape of the HTTP `GET /history`).

use anyhow::Result;
use base64::Engine;
use clap::Args;
use pushgate_grpc::pb;
use serde_json::json;

use crate::grpc::{status, GrpcArgs};

/// Flags of `pushgate history`.
#[derive(Args)]
pub struct HistoryArgs {
    /// The channel (it must match a [[history]] rule).
    #[arg(long, value_name = "NAME")]
    channel: String,
    /// Publications after this offset; without it, the newest ones.
    #[arg(long, value_name = "OFFSET")]
    since: Option<u64>,
    /// At most this many (1-1000).
    #[arg(long, default_value_t = 100)]
    limit: u32,
    #[command(flatten)]
    grpc: GrpcArgs,
}

/// Runs `pushgate history`.
pub fn run(args: HistoryArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut client = args.grpc.connect().await?;
        let req = args.grpc.request(pb::HistoryRequest {
            channel: args.channel.clone(),
            since: args.since,
            limit: args.limit,
        })?;
        let page = client.history(req).await.map_err(status)?.into_inner();
        let publications: Vec<_> = page
            .publications
            .into_iter()
            .map(|p| match p.payload {
                Some(pb::history_publication::Payload::Binary(b)) => json!({
                    "offset": p.offset,
                    "binary": true,
                    "data": base64::engine::general_purpose::STANDARD.encode(b),
                }),
                Some(pb::history_publication::Payload::Text(t)) => {
                    json!({"offset": p.offset, "data": t})
                }
                None => json!({"offset": p.offset}),
            })
            .collect();
        let out = json!({
            "channel": args.channel,
            "epoch": page.epoch,
            "offset": page.offset,
            "oldest": page.oldest,
            "publications": publications,
        });
        println!("{out}");
        Ok(())
    })
}
