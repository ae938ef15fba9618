//! Token refresh, verified off the shard threads.
//!
//! Verifying a signature costs about 0.35 ms for ES256, valid or not: done on a shard's
//! thread, a few connections refreshing in a loop would delay every other connection of
//! that shard. So the reader only checks that the connection may refresh now (it has a
//! token, no refresh in flight, under `max_refreshes_per_minute`: [`ConnHandle::begin_refresh`])
//! and queues the token here; a small pool of verifier threads checks it, applies the
//! new grant through the shard's lock ([`pushgate_hub::Shard::end_refresh`]) and
//! queues the reply.
//! The queue is bounded: when it is full the client is told to retry.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use pushgate_hub::{Hub, RefreshError};
use pushgate_protocol::command::Reply;
use pushgate_protocol::ConnId;

use crate::auth::Authenticator;

/// Tokens waiting for a verifier; beyond, a refresh is refused at once.
const QUEUE: usize = 1024;

/// One refresh to verify.
pub(crate) struct Job {
    pub(crate) token: String,
    pub(crate) conn: ConnId,
    /// The command's `id`, echoed in the reply.
    pub(crate) request: Option<serde_json::Value>,
}

/// The verifier pool's queue. Its threads end once the queue's last sender is dropped.
pub(crate) struct Verifier {
    tx: SyncSender<Job>,
}

impl Verifier {
    /// Starts `threads` verifier threads.
    pub(crate) fn start(auth: Arc<dyn Authenticator>, hub: Hub, threads: usize) -> Verifier {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let (rx, auth, hub) = (rx.clone(), auth.clone(), hub.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("pushgate-verifier-{i}"))
                .spawn(move || run(&rx, &*auth, &hub));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a token verifier thread");
            }
        }
        Verifier { tx }
    }

    /// Queues a refresh; gives it back if the queue is full (or no verifier runs).
    pub(crate) fn submit(&self, job: Job) -> Result<(), Job> {
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(j) | TrySendError::Disconnected(j) => j,
        })
    }
}

fn run(rx: &Mutex<Receiver<Job>>, auth: &dyn Authenticator, hub: &Hub) {
    loop {
        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return, // the edge is gone
        };
        let verified = auth.refresh(&job.token);
        let grant = match &verified {
            Ok(identity) => identity.user.as_deref().zip(identity.grant.clone()),
            Err(_) => None,
        };
        let exp = grant.as_ref().map(|(_, g)| g.expires);
        let Some(applied) = hub.shard_for(job.conn).end_refresh(job.conn, grant) else {
            continue; // the connection closed meanwhile
        };
        let id = job.request.as_ref();
        let frame = match (applied, verified) {
            (Ok(revoked), _) => Reply::Refreshed {
                exp: exp.unwrap_or_default(),
                unsubscribed: &revoked,
                id,
            }
            .to_frame(),
            (Err(RefreshError::Invalid), Err(message)) => refused(message, id),
            (Err(e), _) => refused(e.to_string(), id),
        };
        hub.send_to(job.conn, frame);
    }
}

/// The error reply to a refused refresh.
pub(crate) fn refused(message: String, id: Option<&serde_json::Value>) -> bytes::Bytes {
    Reply::Error {
        code: "refresh_failed",
        message,
        id,
    }
    .to_frame()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    use pushgate_hub::{Grant, HubConfig, Outgoing, Permissions};

    use super::*;
    use crate::auth::Identity;
    use crate::handshake::{Refusal, UpgradeRequest};

    /// Accepts any token for user `a`, and records the thread that verified it.
    struct Recording(Mutex<Vec<String>>);

    impl Authenticator for Recording {
        fn authenticate(&self, _: &UpgradeRequest) -> Result<Identity, Refusal> {
            unreachable!()
        }

        fn refresh(&self, token: &str) -> Result<Identity, String> {
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            self.0.lock().unwrap().push(thread);
            if token == "bad" {
                return Err("invalid token signature".into());
            }
            Ok(Identity {
                user: Some("a".into()),
                grant: Some(Grant {
                    permissions: Arc::new(Permissions::default()),
                    expires: 4_000_000_000,
                    info: None,
                }),
                subscribe: vec![],
            })
        }
    }

    #[tokio::test]
    async fn tokens_are_verified_on_a_verifier_thread_which_sends_the_reply() {
        let hub = Hub::new(HubConfig {
            shards: 1,
            ..HubConfig::default()
        });
        let auth = Arc::new(Recording(Mutex::new(Vec::new())));
        let verifier = Verifier::start(auth.clone(), hub.clone(), 1);
        let grant = Grant {
            permissions: Arc::new(Permissions::default()),
            expires: 4_000_000_000,
            info: None,
        };
        let h = hub.shards()[0].register_with(ConnId(1), Some("a"), Some(grant), &[]);
        let mut replies = Vec::new();
        for token in ["bad", "good"] {
            h.begin_refresh().unwrap();
            let job = Job {
                token: token.into(),
                conn: ConnId(1),
                request: Some(serde_json::json!(7)),
            };
            assert!(verifier.submit(job).is_ok());
            // Wait (bounded) for the verifier's reply in the connection's queue.
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut out = VecDeque::new();
            let mut cx = Context::from_waker(std::task::Waker::noop());
            while !matches!(
                h.poll_outgoing(&mut cx, &mut out, true),
                Poll::Ready(Outgoing::Frames)
            ) {
                assert!(Instant::now() < deadline, "no reply");
                std::thread::sleep(Duration::from_millis(5));
            }
            replies.extend(
                out.drain(..)
                    .map(|f| String::from_utf8_lossy(&f[2..]).into_owned()),
            );
        }
        assert!(
            replies[0].contains("refresh_failed") && replies[0].contains("signature"),
            "{replies:?}"
        );
        assert!(replies[1].contains("\"refreshed\""), "{replies:?}");
        let threads = auth.0.lock().unwrap().clone();
        assert_eq!(threads, ["pushgate-verifier-0", "pushgate-verifier-0"]);
    }
}
