//! The accept loop: takes sockets off the listener and hands each to the thread of
//! the shard that will own it.
//!
//! It survives running out of file descriptors (`EMFILE`/`ENFILE`): it logs, counts,
//! pauses briefly and resumes once connections have closed, instead of exiting or
//! spinning.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::connection::serve;
use crate::EdgeShared;

/// Accepts until `stop` is cancelled.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    edge: Arc<EdgeShared>,
    stop: CancellationToken,
) {
    let fd_exhausted = metrics::counter!("pushgate_accept_errors_total", "kind" => "fd_exhausted");
    let other_errors = metrics::counter!("pushgate_accept_errors_total", "kind" => "other");
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let std = match stream.into_std() {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                let (id, shard) = edge.hub.next_conn();
                let shard = shard.clone();
                let rt = &edge.runtimes[shard.id()];
                rt.spawn(serve(std, id, shard, edge.clone()));
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

fn is_fd_exhaustion(e: &io::Error) -> bool {
    // EMFILE (24): per-process limit; ENFILE (23): system-wide; ENOBUFS/ENOMEM: memory.
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}
