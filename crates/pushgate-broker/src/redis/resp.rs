//! The few pieces of RESP2 the broker speaks: commands out (arrays of bulk strings),
//! replies and pub/sub pushes in. Parsing works on a growing buffer and never
//! consumes a partial value.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// A reply or push from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Bytes>),
    Array(Option<Vec<Value>>),
}

impl Value {
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }
}

/// Redis sent something that is not RESP2.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed reply from redis: {0}")]
pub struct ProtocolError(&'static str);

/// Largest bulk string accepted from Redis (its own limit is 512 MiB).
const MAX_BULK: usize = 512 << 20;

/// Deepest nesting of arrays accepted. The replies and pushes the broker reads nest two
/// levels; the limit keeps a malformed stream of `*1\r\n*1\r\n...` from exhausting
/// the stack of the recursive parser.
const MAX_DEPTH: usize = 8;

/// Appends one command to `out`.
pub fn command<'a>(out: &mut Vec<u8>, args: impl IntoIterator<Item = &'a [u8]>) {
    let args: Vec<&[u8]> = args.into_iter().collect();
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Takes one complete value off the front of `buf`, or `None` if more bytes are needed.
pub fn parse(buf: &mut BytesMut) -> Result<Option<Value>, ProtocolError> {
    match measure(buf, 0, 0)? {
        None => Ok(None),
        Some(end) => {
            let mut frame = buf.split_to(end).freeze();
            Ok(Some(take(&mut frame)))
        }
    }
}

/// The end offset of the complete value starting at `at`, if it is complete; `depth`
/// is the number of arrays it is nested in.
fn measure(buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, ProtocolError> {
    let Some(line_end) = find_crlf(buf, at + 1) else {
        return Ok(None);
    };
    let Some(&tag) = buf.get(at) else {
        return Ok(None);
    };
    let line = &buf[at + 1..line_end];
    let after = line_end + 2;
    match tag {
        b'+' | b'-' | b':' => Ok(Some(after)),
        b'$' => {
            let n = int(line)?;
            if n < 0 {
                return Ok(Some(after));
            }
            let n = n as usize;
            if n > MAX_BULK {
                return Err(ProtocolError("bulk string too large"));
            }
            let end = after + n + 2;
            Ok((buf.len() >= end).then_some(end))
        }
        b'*' => {
            if depth >= MAX_DEPTH {
                return Err(ProtocolError("arrays nested too deep"));
            }
            let n = int(line)?;
            let mut pos = after;
            for _ in 0..n.max(0) {
                match measure(buf, pos, depth + 1)? {
                    Some(end) => pos = end,
                    None => return Ok(None),
                }
            }
            Ok(Some(pos))
        }
        _ => Err(ProtocolError("unknown type byte")),
    }
}

/// Builds the value from a buffer that `measure` found complete.
fn take(b: &mut Bytes) -> Value {
    let tag = b[0];
    let line_end = find_crlf(b, 1).expect("measured");
    let line = b.slice(1..line_end);
    b.advance(line_end + 2);
    let text = || String::from_utf8_lossy(&line).into_owned();
    match tag {
        b'+' => Value::Simple(text()),
        b'-' => Value::Error(text()),
        b':' => Value::Int(int(&line).unwrap_or(0)),
        b'$' => {
            let n = int(&line).unwrap_or(-1);
            if n < 0 {
                return Value::Bulk(None);
            }
            let data = b.split_to(n as usize);
            b.advance(2);
            Value::Bulk(Some(data))
        }
        _ => {
            let n = int(&line).unwrap_or(-1);
            if n < 0 {
                return Value::Array(None);
            }
            Value::Array(Some((0..n).map(|_| take(b)).collect()))
        }
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| p + from)
}

fn int(line: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ProtocolError("bad integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<Value> {
        let mut buf = BytesMut::from(input);
        let mut out = vec![];
        while let Some(v) = parse(&mut buf).unwrap() {
            out.push(v);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        out
    }

    #[test]
    fn encodes_a_command_as_an_array_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, [&b"SPUBLISH"[..], b"k", b"a\r\nb"]);
        assert_eq!(out, b"*3\r\n$8\r\nSPUBLISH\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n");
    }

    #[test]
    fn parses_every_kind_including_pushes() {
        let v = all(b"+OK\r\n-ERR no\r\n:3\r\n$-1\r\n$3\r\nabc\r\n*3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$2\r\n\x00\x01\r\n");
        assert_eq!(v[0], Value::Simple("OK".into()));
        assert_eq!(v[1], Value::Error("ERR no".into()));
        assert_eq!(v[2], Value::Int(3));
        assert_eq!(v[3], Value::Bulk(None));
        assert_eq!(v[4], Value::Bulk(Some(Bytes::from_static(b"abc"))));
        let Value::Array(Some(items)) = &v[5] else {
            panic!("{:?}", v[5])
        };
        assert_eq!(items[2], Value::Bulk(Some(Bytes::from_static(b"\x00\x01"))));
    }

    #[test]
    fn waits_for_a_whole_value_at_every_split_point() {
        let input = b"*2\r\n$5\r\nhello\r\n:42\r\n";
        for cut in 0..input.len() {
            let mut buf = BytesMut::from(&input[..cut]);
            assert_eq!(parse(&mut buf).unwrap(), None, "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed at {cut}");
        }
        assert_eq!(all(input).len(), 1);
    }

    #[test]
    fn refuses_arrays_nested_deeper_than_any_reply() {
        let mut ok = b"*1\r\n".repeat(MAX_DEPTH);
        ok.extend_from_slice(b":1\r\n");
        assert_eq!(all(&ok).len(), 1);
        let mut deep = BytesMut::from(&b"*1\r\n".repeat(100_000)[..]);
        assert_eq!(
            parse(&mut deep),
            Err(ProtocolError("arrays nested too deep"))
        );
    }

    #[test]
    fn refuses_garbage() {
        let mut buf = BytesMut::from(&b"?what\r\n"[..]);
        assert!(parse(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"$abc\r\n"[..]);
        assert!(parse(&mut buf).is_err());
    }
}
