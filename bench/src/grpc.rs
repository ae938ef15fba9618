//! The load generator's gRPC client for `pushgate.v1.Pushgate/PublishStream`: tonic
//! with the gateway's own generated types (`pushgate_grpc::pb`), one HTTP/2
//! connection, one bidirectional stream, publications sent as fast as HTTP/2 flow
//! control and the gateway's window allow, each reply (`seq`, ok or per-item error)
//! matched to its publication. A stream that ends before every publication got its
//! reply is reported as an error.
//!
//! (It was a hand-written HTTP/2 client of 447 lines, to keep tonic out of the load
//! generator's build; the workspace builds tonic for the binary anyway, so sharing
//! the gateway's client costs the bench little and drops a second protocol
//! implementation to maintain.)

use std::time::Duration;

use anyhow::{bail, Context, Result};
use pushgate_grpc::pb::{self, pushgate_client::PushgateClient};
use tokio_stream::wrappers::ReceiverStream;

use crate::target::Endpoint;

/// Publications queued towards the stream ahead of the gateway's acks.
const QUEUE: usize = 1024;
/// Nothing from the server for this long fails the stream.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One reply of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Per-item error: gRPC code and message.
    Refused(i32, String),
}

/// Publishes `n` broadcasts whose payloads `make(seq)` gives (text) on one
/// `PublishStream`, and reports each reply to `done(seq, outcome)`.
pub async fn publish_stream(
    ep: &Endpoint,
    n: usize,
    mut make: impl FnMut(usize) -> Vec<u8>,
    mut done: impl FnMut(usize, Outcome),
) -> Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", ep.addr))?
        .connect_timeout(IDLE_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {}", ep.addr))?;
    let mut client = PushgateClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
    let send = async move {
        for seq in 0..n {
            let text = String::from_utf8(make(seq)).context("payloads are text")?;
            let req = pb::PublishStreamRequest {
                seq: seq as u64,
                publication: Some(pb::Publication {
                    target: Some(pb::Target {
                        kind: Some(pb::target::Kind::All(true)),
                    }),
                    payload: Some(pb::publication::Payload::Text(text)),
                    exclude: String::new(),
                }),
                idempotency_key: String::new(),
            };
            if tx.send(req).await.is_err() {
                break; // the stream ended; the reader says why
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    let receive = async {
        let mut replies = client
            .publish_stream(ReceiverStream::new(rx))
            .await
            .map_err(|s| anyhow::anyhow!("PublishStream: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        for acked in 0..n {
            let reply = tokio::time::timeout(IDLE_TIMEOUT, replies.message())
                .await
                .context("PublishStream: no reply for 30 s")?
                .map_err(|s| anyhow::anyhow!("PublishStream: {:?}: {}", s.code(), s.message()))?;
            let Some(r) = reply else {
                bail!("PublishStream ended after {acked} of {n} replies");
            };
            done(r.seq as usize, outcome(r.result));
        }
        Ok(())
    };
    let (sent, received) = tokio::join!(send, receive);
    received?;
    sent
}

fn outcome(result: Option<pb::publish_stream_reply::Result>) -> Outcome {
    use pb::publish_stream_reply::Result as R;
    match result {
        Some(R::Ok(_)) => Outcome::Ok,
        Some(R::Error(e)) => Outcome::Refused(e.code, e.message),
        None => Outcome::Refused(-1, "reply without result".into()),
    }
}
