//! The accept loop: takes sockets off the listener and hands each to the thread of
//! the shard that will own it.
//!
//! It survives running out of file descriptors (`EMFILE`/`ENFILE`): it logs, counts,
//! pauses briefly and resumes once connections have closed, instead of exiting or
//! spinning.
//!
//! With `max_connection_rate_per_ip`, an address over its rate is answered `429 Too
//! Many Requests` at once, without reading its request, and closed: the cheapest
//! answer that still tells an honest client what happened (one that already sent its
//! request may see a reset instead of the response).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::connection::serve;
use crate::limits::PerIpRate;
use crate::EdgeShared;

/// The whole answer to an address over its connection rate.
const TOO_MANY: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 53\r\nRetry-After: 1\r\nConnection: close\r\n\r\ntoo many connection attempts from this address; wait\n";

/// Accepts until `stop` is cancelled.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    edge: Arc<EdgeShared>,
    stop: CancellationToken,
) {
    let fd_exhausted = metrics::counter!("pushgate_accept_errors_total", "kind" => "fd_exhausted");
    let other_errors = metrics::counter!("pushgate_accept_errors_total", "kind" => "other");
    let mut rate = match edge.config.max_connection_rate_per_ip {
        0 => None,
        n => Some(PerIpRate::new(n)),
    };
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Some(rate) = &mut rate {
                    if !rate.allow(peer.ip(), Instant::now()) {
                        refuse_rate(&stream, &edge);
                        continue;
                    }
                }
                let std = match stream.into_std() {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                let (id, shard) = edge.hub.next_conn();
                let shard = shard.clone();
                let rt = &edge.runtimes[shard.id()];
                edge.tasks.spawn_on(serve(std, id, shard, edge.clone()), rt);
            }
            Err(e) if is_fd_exhaustion(&e) => {
                fd_exhausted.increment(1);
                tracing::warn!(error = %e, "out of file descriptors; pausing accepts");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                other_errors.increment(1);
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Answers 429 without waiting (the socket's send buffer is empty) and drops it.
fn refuse_rate(stream: &TcpStream, edge: &EdgeShared) {
    edge.limit_metrics.connection_rate.increment(1);
    edge.count_refusal(429);
    let _ = stream.try_write(TOO_MANY);
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    // EMFILE (24): per-process limit; ENFILE (23): system-wide; ENOBUFS/ENOMEM: memory.
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}
