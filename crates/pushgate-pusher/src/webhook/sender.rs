//! One app's webhook sender: a task that takes what its queue holds (up to
//! [`MAX_BATCH`] events), POSTs it as one signed body, and retries a failed POST with
//! [`Backoff`]. While it sends or waits, new events wait in the bounded queue; when
//! the queue is full they are dropped by [`super::Webhooks`], never waited for.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Backoff, WebhookEvent};
use crate::api::sign;

/// Most events in one POST.
pub const MAX_BATCH: usize = 50;
/// Longest wait for a receiver's answer; beyond, the attempt failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how one app's webhooks are sent.
pub struct Target {
    pub app_id: String,
    pub url: Uri,
    pub key: String,
    pub secret: String,
}

/// The body of one POST: `{"time_ms":…,"events":[…]}`, fields in Pusher's order.
pub fn body(time_ms: u64, events: &[WebhookEvent]) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        time_ms: u64,
        events: &'a [WebhookEvent],
    }
    serde_json::to_string(&Body { time_ms, events }).expect("strings and numbers serialize")
}

/// Takes `first` and whatever else the queue holds now, up to [`MAX_BATCH`].
pub fn take_batch(first: WebhookEvent, rx: &mut mpsc::Receiver<WebhookEvent>) -> Vec<WebhookEvent> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(e) => batch.push(e),
            Err(_) => break,
        }
    }
    batch
}

/// Sends the queue's events until `stop` (or until every sender handle is dropped).
pub async fn run(
    target: Target,
    mut rx: mpsc::Receiver<WebhookEvent>,
    backoff: Backoff,
    stop: CancellationToken,
) {
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let app = target.app_id.clone();
    let sent = metrics::counter!("pushgate_pusher_webhook_requests_total", "app" => app.clone(), "outcome" => "ok");
    let retried = metrics::counter!("pushgate_pusher_webhook_requests_total", "app" => app.clone(), "outcome" => "retry");
    let failed = metrics::counter!("pushgate_pusher_webhook_events_failed_total", "app" => app);
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            e = rx.recv() => match e {
                Some(e) => e,
                None => return,
            },
        };
        let batch = take_batch(first, &mut rx);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match post(&client, &target, &batch).await {
                Ok(()) => {
                    sent.increment(1);
                    break;
                }
                Err(e) => match backoff.after(attempt) {
                    Some(wait) => {
                        retried.increment(1);
                        tracing::debug!(app = %target.app_id, attempt, error = %e, "webhook failed; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                    None => {
                        failed.increment(batch.len() as u64);
                        tracing::warn!(app = %target.app_id, events = batch.len(), attempts = attempt, error = %e, "webhook batch dropped after its last attempt");
                        break;
                    }
                },
            }
        }
    }
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Http(#[from] hyper_util::client::legacy::Error),
    #[error("no answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    #[error("the receiver answered {0}")]
    Status(hyper::StatusCode),
}

/// One attempt: a fresh `time_ms` (receivers refuse bodies older than 5 minutes, and a
/// batch may be retried for longer), signed, POSTed; any 2xx is success.
async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    target: &Target,
    events: &[WebhookEvent],
) -> Result<(), SendError> {
    let time_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let body = body(time_ms, events);
    let req = Request::builder()
        .method(Method::POST)
        .uri(target.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header("X-Pusher-Key", &target.key)
        .header("X-Pusher-Signature", sign(&target.secret, &body))
        .body(Full::new(Bytes::from(body)))
        .expect("a checked URI and ASCII headers make a valid request");
    let resp = tokio::time::timeout(REQUEST_TIMEOUT, client.request(req))
        .await
        .map_err(|_| SendError::Timeout)??;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(SendError::Status(resp.status()))
    }
}
