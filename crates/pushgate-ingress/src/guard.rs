//! What bounds a connection to an internal port (HTTP or gRPC): how many may be open at
//! once, and how long one may stay silent.
//!
//! Internal ports are meant to be private, but one that is reachable by mistake must
//! not let idle or half-open sockets pile up until the node runs out of file
//! descriptors and refuses WebSocket clients and its own probes. A [`Gate`] admits a
//! port's connections up to its limit (beyond, they are closed at once and counted);
//! each admitted one is [`Guarded`]: it ends when no byte has moved in either direction
//! for the idle timeout. Protocol-level deadlines (HTTP header and body timeouts,
//! HTTP/2 keepalive) are set where each server is built.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use metrics::{Counter, Gauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Admits the connections of one internal port. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    /// One permit per connection; `None`: no limit.
    permits: Option<Arc<Semaphore>>,
    idle: Duration,
    metrics: Arc<GateMetrics>,
}

struct GateMetrics {
    open: Gauge,
    refused: Counter,
    idle_closed: Counter,
}

impl Gate {
    /// A gate for `port` (the metric label: `http` or `grpc`) admitting at most
    /// `max_connections` at once (0: no limit), each closed after `idle` of silence.
    pub fn new(port: &'static str, max_connections: usize, idle: Duration) -> Gate {
        Gate {
            permits: (max_connections > 0).then(|| Arc::new(Semaphore::new(max_connections))),
            idle,
            metrics: Arc::new(GateMetrics {
                open: metrics::gauge!("pushgate_internal_connections", "port" => port),
                refused: metrics::counter!("pushgate_internal_connections_refused_total", "port" => port),
                idle_closed: metrics::counter!("pushgate_internal_timeouts_total", "port" => port, "kind" => "idle"),
            }),
        }
    }

    /// Wraps an accepted connection; `None` (counted) when the port is full, and the
    /// caller drops the socket, which closes it at once.
    pub fn admit<IO>(&self, io: IO) -> Option<Guarded<IO>> {
        let permit = match &self.permits {
            None => None,
            Some(p) => match p.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    self.metrics.refused.increment(1);
                    return None;
                }
            },
        };
        self.metrics.open.increment(1.0);
        let now = Instant::now();
        Some(Guarded {
            io,
            idle: self.idle,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + self.idle)),
            place: Place {
                _permit: permit,
                metrics: self.metrics.clone(),
            },
        })
    }
}

/// A connection's place at its gate, given back when the connection is dropped.
struct Place {
    _permit: Option<OwnedSemaphorePermit>,
    metrics: Arc<GateMetrics>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.metrics.open.decrement(1.0);
    }
}

/// An admitted connection: reads and writes fail with `TimedOut` once nothing has been
/// read or written for the idle timeout. The clock is checked only while the server
/// waits on the socket, so a request being served is never cut by it.
pub struct Guarded<IO> {
    io: IO,
    idle: Duration,
    /// When a byte last moved in either direction.
    last: Instant,
    /// Fires at `last + idle` (re-armed lazily, only when it fires early).
    timer: Pin<Box<Sleep>>,
    place: Place,
}

impl<IO> Guarded<IO> {
    /// The wrapped connection.
    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Ready with the error to return once the connection has been silent too long.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = self.last + self.idle;
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        ready!(self.timer.as_mut().poll(cx));
        self.last = Instant::now(); // count it once, should the server poll again
        self.place.metrics.idle_closed.increment(1);
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "internal connection idle for too long",
        ))
    }

    /// What a write of the wrapped connection answered, passed on: bytes written restart
    /// the silence clock; a write that has to wait checks it.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.last = Instant::now();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => self.poll_idle(cx).map(Err),
            ready => ready,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.last = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
            ready => ready,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_times_out_and_activity_defers_it() {
        let gate = Gate::new("test", 0, Duration::from_secs(10));
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut g = gate.admit(ours).unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        theirs.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        g.read_exact(&mut b).await.unwrap();
        // 6 s after that byte the connection is still open: the clock restarted.
        let started = Instant::now();
        let e = g.read(&mut b).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_refused_and_places_come_back() {
        let gate = Gate::new("test", 2, Duration::from_secs(60));
        let a = gate.admit(()).unwrap();
        let _b = gate.admit(()).unwrap();
        assert!(gate.admit(()).is_none());
        drop(a);
        assert!(gate.admit(()).is_some());
    }
}
