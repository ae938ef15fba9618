//! One connection to Redis: the address from a `redis://` URL, connect with a
//! timeout, authenticate, and read values off the socket.

use std::time::Duration;

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::resp::{self, Value};

/// Where Redis is and how to log in, from `redis://[[user]:password@]host[:port][/db]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// A `redis_url` that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("redis_url {0:?}: expected redis://[[user]:password@]host[:port]")]
pub struct UrlError(pub String);

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, UrlError> {
        let bad = || UrlError(url.to_owned());
        let rest = url.strip_prefix("redis://").ok_or_else(bad)?;
        let rest = rest.split('/').next().unwrap_or_default();
        let (auth, host) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let addr = if host.starts_with('[') || host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:6379")
        };
        let (username, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some((u, p)) => ((!u.is_empty()).then(|| u.to_owned()), Some(p.to_owned())),
                None => (None, Some(a.to_owned())),
            },
        };
        Ok(Endpoint {
            addr,
            username,
            password,
        })
    }
}

/// Why a connection failed or was dropped.
#[derive(Debug, Error)]
pub enum ConnError {
    #[error("cannot reach redis at {0}: {1}")]
    Connect(String, std::io::Error),
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

/// A connection with its read buffer.
pub struct Conn {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// Connects, logs in (AUTH) and checks that Redis serves (`PING` answered `PONG`:
    /// a Redis still loading its data answers `LOADING`), all within `timeout`.
    pub async fn open(ep: &Endpoint, timeout: Duration) -> Result<Conn, ConnError> {
        let attempt = async {
            let stream = TcpStream::connect(&ep.addr)
                .await
                .map_err(|e| ConnError::Connect(ep.addr.clone(), e))?;
            let _ = stream.set_nodelay(true);
            let mut conn = Conn {
                stream,
                buf: BytesMut::with_capacity(64 * 1024),
            };
            if let Some(pw) = &ep.password {
                let mut cmd = Vec::new();
                match &ep.username {
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
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| ConnError::Timeout(ep.addr.clone(), timeout))?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_url_forms_people_use() {
        let e = Endpoint::parse("redis://127.0.0.1").unwrap();
        assert_eq!(e.addr, "127.0.0.1:6379");
        assert_eq!(e.password, None);
        let e = Endpoint::parse("redis://:s3cret@cache:7000/0").unwrap();
        assert_eq!(
            (e.addr.as_str(), e.password.as_deref()),
            ("cache:7000", Some("s3cret"))
        );
        let e = Endpoint::parse("redis://app:pw@[::1]:6380").unwrap();
        assert_eq!(e.username.as_deref(), Some("app"));
        assert_eq!(e.addr, "[::1]:6380");
        assert!(Endpoint::parse("http://x").is_err());
        assert!(Endpoint::parse("redis://").is_err());
    }
}
