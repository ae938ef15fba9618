//! `PublishStream`: a long-lived stream for high-rate publishers.
//!
//! Two tasks per stream, joined by a bounded channel of at most `stream_window`
//! pending items:
//!
//! - the **reader** takes requests in order, validates each, checks its idempotency
//!   key and submits it to the broker ([`Broker::submit`](pushgate_broker::Broker::submit)
//!   waits while a queue is full), then queues the pending item;
//! - the **acker** awaits each pending item in the same order and sends its reply.
//!
//! So every request gets exactly one reply, in request order, and publications reach
//! every shard in request order. When the window is full the reader stops reading,
//! and HTTP/2 flow control makes the publisher wait: nothing is dropped silently. A
//! refused item gets a per-item error and the stream goes on. When the node stops,
//! the reader stops reading, every item already read is still acked, and the stream
//! ends with `UNAVAILABLE`: items after the last ack were not accepted.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::error::IngressError;
use crate::idempotency::{self, Check, Claim};
use crate::pb;
use crate::service::{Shared, SOURCE};

/// Replies buffered towards the publisher beyond the window.
const REPLY_BUFFER: usize = 64;

type Reply = Result<pb::PublishStreamReply, Status>;

/// One item between the reader and the acker.
enum Pending {
    /// Answered already (refused).
    Done(pb::PublishStreamReply),
    /// Handed to the broker; its outcome comes later.
    Submitted {
        seq: u64,
        submitted: pushgate_broker::Pending,
        claim: Option<Claim>,
    },
    /// A retry of a key seen within the window: repeats the first result.
    Duplicate {
        seq: u64,
        key: String,
        outcome: tokio::sync::watch::Receiver<Option<pb::PublishReply>>,
    },
    /// The stream ends with this status (the node is stopping).
    End(Status),
}

/// Starts the reader and the acker of one stream; returns the replies.
pub(crate) fn run(
    shared: Arc<Shared>,
    inbound: Streaming<pb::PublishStreamRequest>,
) -> ReceiverStream<Reply> {
    let (pending_tx, pending_rx) = mpsc::channel(shared.config.stream_window.max(1));
    let (reply_tx, reply_rx) = mpsc::channel(REPLY_BUFFER);
    tokio::spawn(read(shared.clone(), inbound, pending_tx));
    tokio::spawn(ack(shared, pending_rx, reply_tx));
    ReceiverStream::new(reply_rx)
}

async fn read(
    shared: Arc<Shared>,
    mut inbound: Streaming<pb::PublishStreamRequest>,
    pending: mpsc::Sender<Pending>,
) {
    loop {
        let msg = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => {
                let _ = pending
                    .send(Pending::End(Status::unavailable(
                        "the gateway is shutting down; requests after the last reply were not accepted",
                    )))
                    .await;
                return;
            }
            m = inbound.message() => m,
        };
        let req = match msg {
            Ok(Some(req)) => req,
            // The publisher closed its side: the acker finishes what is pending.
            Ok(None) => return,
            Err(status) => {
                tracing::debug!(%status, "publish stream ended by the publisher");
                return;
            }
        };
        // Not raced against `stop`: a submission cut short could reach some shards
        // and not others, and the publisher would be told it was not accepted.
        let item = submit(&shared, req).await;
        if pending.send(item).await.is_err() {
            return; // the acker is gone: the publisher stopped reading replies
        }
    }
}

/// Validates, de-duplicates and submits one request.
async fn submit(shared: &Arc<Shared>, req: pb::PublishStreamRequest) -> Pending {
    let seq = req.seq;
    let refused = |e: IngressError| Pending::Done(error_reply(seq, &e));
    let mut m = match shared.prepare(req.publication) {
        Ok(m) => m,
        Err(e) => return refused(e),
    };
    let claim = match req.idempotency_key.as_str() {
        "" => None,
        key if key.len() > idempotency::MAX_KEY_BYTES => {
            metrics::counter!("pushgate_publications_refused_total", "reason" => "idempotency_key")
                .increment(1);
            return refused(IngressError::KeyTooLong(key.len()));
        }
        key => match shared.window.check(key) {
            Check::New(claim) => Some(claim),
            Check::Seen(outcome) => {
                return Pending::Duplicate {
                    seq,
                    key: req.idempotency_key,
                    outcome,
                }
            }
        },
    };
    // The broker keeps the key too: with Redis, cluster-wide, so that a retry on
    // another node after an uncertain outcome is not delivered twice.
    m.idempotency_key = claim.as_ref().map(|_| req.idempotency_key.clone());
    match shared.broker.submit(m, SOURCE).await {
        Ok(submitted) => Pending::Submitted {
            seq,
            submitted,
            claim,
        },
        Err(e) => refused(e.into()), // dropping the claim releases the key
    }
}

async fn ack(
    shared: Arc<Shared>,
    mut pending: mpsc::Receiver<Pending>,
    replies: mpsc::Sender<Reply>,
) {
    while let Some(item) = pending.recv().await {
        let reply = match item {
            Pending::Done(r) => Ok(r),
            Pending::Submitted {
                seq,
                submitted,
                claim,
            } => match submitted.report().await {
                Ok(delivery) => {
                    let duplicate = delivery.duplicate;
                    let reply = shared.reply(delivery);
                    if let Some(c) = claim {
                        c.complete(&reply);
                    }
                    Ok(ok_reply(seq, reply, duplicate))
                }
                Err(e) => Ok(error_reply(seq, &e.into())),
            },
            Pending::Duplicate { seq, key, outcome } => match idempotency::outcome(outcome).await {
                Some(first) => Ok(ok_reply(seq, first, true)),
                None => Ok(error_reply(seq, &IngressError::FirstAttemptFailed(key))),
            },
            Pending::End(status) => Err(status),
        };
        let end = reply.is_err();
        if replies.send(reply).await.is_err() || end {
            return;
        }
    }
}

fn ok_reply(seq: u64, reply: pb::PublishReply, duplicate: bool) -> pb::PublishStreamReply {
    pb::PublishStreamReply {
        seq,
        result: Some(pb::publish_stream_reply::Result::Ok(reply)),
        duplicate,
    }
}

fn error_reply(seq: u64, e: &IngressError) -> pb::PublishStreamReply {
    pb::PublishStreamReply {
        seq,
        result: Some(pb::publish_stream_reply::Result::Error(pb::ItemError {
            code: e.code() as i32,
            message: e.to_string(),
        })),
        duplicate: false,
    }
}
