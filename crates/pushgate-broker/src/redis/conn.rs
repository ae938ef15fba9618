//! One connection to Redis: connect (TCP, or TLS for `rediss://`) with a timeout,
//! log in, and read values off the socket.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

use super::deployment::Deployment;
use super::resp::{self, Value};

/// Why a connection failed or was dropped.
#[derive(Debug, Error)]
pub enum ConnError {
    #[error("cannot reach redis at {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS to redis at {0}: {1}")]
    Tls(String, std::io::Error),
    #[error("no redis primary known: {0}")]
    NoPrimary(String),
    #[error("redis at {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("redis refused: {0}")]
    Refused(String),
    #[error("redis connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("redis closed the connection")]
    Closed,
    #[error(transparent)]
    Protocol(#[from] resp::ProtocolError),
}

/// TCP, or TLS over TCP.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, b),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, b),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How to open connections to the nodes of one deployment.
#[derive(Debug, Clone)]
pub struct Dialer {
    pub deployment: Arc<Deployment>,
    pub timeout: Duration,
}

impl Dialer {
    /// A data node: connects, logs in, checks that it serves (see [`Conn::open`]).
    pub async fn open(&self, addr: &str) -> Result<Conn, ConnError> {
        let d = &self.deployment;
        Conn::open(self, addr, d.username.as_deref(), d.password.as_deref()).await
    }

    /// A sentinel: the same TLS, the sentinels' own login.
    pub async fn open_sentinel(&self, addr: &str) -> Result<Conn, ConnError> {
        let d = &self.deployment;
        let (user, pw) = (
            d.sentinel_username.as_deref(),
            d.sentinel_password.as_deref(),
        );
        Conn::open(self, addr, user, pw).await
    }
}

/// A connection with its read buffer.
pub struct Conn {
    pub stream: Stream,
    pub addr: String,
    buf: BytesMut,
}

/// The name a TLS certificate must carry for `host:port`.
fn server_name(addr: &str) -> Option<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h,
        None => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).ok()
}

impl Conn {
    /// Connects, logs in (`AUTH [user] password`, with a password) and checks that
    /// Redis serves (`PING` answered `PONG`: a Redis still loading its data answers
    /// `LOADING`), all within the timeout.
    pub async fn open(
        d: &Dialer,
        addr: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Conn, ConnError> {
        let ep = &d.deployment;
        let attempt = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| ConnError::Connect(addr.to_owned(), e))?;
            let _ = tcp.set_nodelay(true);
            let stream = match &ep.tls {
                None => Stream::Tcp(tcp),
                Some(config) => {
                    let name = server_name(addr).ok_or_else(|| {
                        ConnError::Tls(addr.to_owned(), io::Error::other("not a host name"))
                    })?;
                    let tls = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|e| ConnError::Tls(addr.to_owned(), e))?;
                    Stream::Tls(Box::new(tls))
                }
            };
            let mut conn = Conn {
                stream,
                addr: addr.to_owned(),
                buf: BytesMut::with_capacity(64 * 1024),
            };
            if let Some(pw) = password {
                let mut cmd = Vec::new();
                match username {
                    Some(u) => resp::command(&mut cmd, [&b"AUTH"[..], u.as_bytes(), pw.as_bytes()]),
                    None => resp::command(&mut cmd, [&b"AUTH"[..], pw.as_bytes()]),
                }
                conn.stream.write_all(&cmd).await?;
                if let Value::Error(e) = conn.read().await? {
                    return Err(ConnError::Refused(e));
                }
            }
            let mut cmd = Vec::new();
            resp::command(&mut cmd, [&b"PING"[..]]);
            conn.stream.write_all(&cmd).await?;
            match conn.read().await? {
                Value::Simple(s) if s == "PONG" => Ok(conn),
                Value::Error(e) => Err(ConnError::Refused(e)),
                other => Err(ConnError::Refused(format!("PING answered {other:?}"))),
            }
        };
        tokio::time::timeout(d.timeout, attempt)
            .await
            .map_err(|_| ConnError::Timeout(addr.to_owned(), d.timeout))?
    }

    /// One command, its reply (for setup: topology, discovery).
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Value, ConnError> {
        let mut cmd = Vec::new();
        resp::command(&mut cmd, args.iter().copied());
        self.stream.write_all(&cmd).await?;
        self.read().await
    }

    /// Splits the connection: reading (with the buffer) and writing apart.
    pub fn split(self) -> (Reader, WriteHalf<Stream>) {
        let (read, write) = tokio::io::split(self.stream);
        (
            Reader {
                read,
                buf: self.buf,
            },
            write,
        )
    }

    /// Reads the next value (reply or push).
    pub async fn read(&mut self) -> Result<Value, ConnError> {
        loop {
            if let Some(v) = resp::parse(&mut self.buf)? {
                return Ok(v);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(ConnError::Closed);
            }
        }
    }
}

/// The reading half of a split connection.
pub struct Reader {
    read: ReadHalf<Stream>,
    buf: BytesMut,
}

impl Reader {
    /// Reads the next value (reply or push).
    pub async fn read(&mut self) -> Result<Value, ConnError> {
        loop {
            if let Some(v) = resp::parse(&mut self.buf)? {
                return Ok(v);
            }
            if self.read.read_buf(&mut self.buf).await? == 0 {
                return Err(ConnError::Closed);
            }
        }
    }
}
