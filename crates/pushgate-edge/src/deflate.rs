//! permessage-deflate negotiation (RFC 7692 §5, §7.1) in the upgrade handshake.
//!
//! pushgate accepts the first `permessage-deflate` offer it can honour and always
//! answers with `server_no_context_takeover` (so a publication's compressed frame is
//! the same bytes for every recipient, `pushgate-hub`'s `compressed.rs`) and
//! `client_no_context_takeover` (RFC 7692 §7.1.1.2 lets a server require it of any
//! client): every client message is a deflate stream of its own, inflated by the shard
//! thread's one decompressor, so a connection keeps no inflate state at all, idle or
//! not. A client's `server_max_window_bits=N` is accepted (8-15) and echoed; its
//! `client_max_window_bits` needs no answer (our decompressor reads any window). An
//! offer with an unknown parameter, a repeated one or a bad value is declined; with no
//! acceptable offer the connection proceeds uncompressed.

use crate::handshake::UpgradeRequest;

/// What was agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// The `server_max_window_bits` the client asked for, if it did.
    pub(crate) server_max_window_bits: Option<u8>,
}

impl Agreed {
    /// The window the hub may assume for this connection's compressed frames.
    pub(crate) fn window_bits(&self) -> u8 {
        self.server_max_window_bits.unwrap_or(15)
    }

    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    pub(crate) fn response(&self) -> String {
        let mut s = String::from(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        );
        if let Some(bits) = self.server_max_window_bits {
            s.push_str(&format!("; server_max_window_bits={bits}"));
        }
        s
    }
}

/// The first acceptable `permessage-deflate` offer of the request, if any.
pub(crate) fn negotiate(req: &UpgradeRequest) -> Option<Agreed> {
    req.headers
        .iter()
        .filter(|(name, _)| name == "sec-websocket-extensions")
        .flat_map(|(_, value)| split_outside_quotes(value, ','))
        .find_map(accept_offer)
}

/// One offer (`name; param; param=value`) accepted, or `None`.
fn accept_offer(offer: &str) -> Option<Agreed> {
    let mut parts = split_outside_quotes(offer, ';').into_iter();
    if !parts
        .next()?
        .trim()
        .eq_ignore_ascii_case("permessage-deflate")
    {
        return None;
    }
    let mut agreed = Agreed {
        server_max_window_bits: None,
    };
    let mut seen: Vec<String> = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (param.trim(), None),
        };
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None; // RFC 7692 §7: a repeated parameter declines the offer
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(v)) => {
                agreed.server_max_window_bits = Some(window_bits(v)?);
            }
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                window_bits(v)?;
            }
            _ => return None,
        }
        seen.push(name);
    }
    Some(agreed)
}

/// A window-bits value: 8 to 15, digits only, no leading zero (RFC 7692 §7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

/// Splits on `sep` except inside double quotes.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(values: &[&str]) -> Option<Agreed> {
        negotiate(&UpgradeRequest {
            headers: values
                .iter()
                .map(|v| ("sec-websocket-extensions".to_owned(), (*v).to_owned()))
                .collect(),
            ..UpgradeRequest::default()
        })
    }

    #[test]
    fn accepts_what_browsers_and_libraries_send() {
        let a = offer(&["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(a.window_bits(), 15);
        assert_eq!(
            a.response(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        let a = offer(&["permessage-deflate; server_max_window_bits=10; client_max_window_bits=12; server_no_context_takeover; client_no_context_takeover"]).unwrap();
        assert_eq!(a.window_bits(), 10);
        assert!(a.response().ends_with("; server_max_window_bits=10"));
        assert_eq!(offer(&["PerMessage-Deflate"]).unwrap().window_bits(), 15);
        let a = offer(&["permessage-deflate; server_max_window_bits=\"8\""]).unwrap();
        assert_eq!(a.window_bits(), 8);
    }

    #[test]
    fn takes_the_first_acceptable_offer_across_headers() {
        let a = offer(&[
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=9",
        ])
        .unwrap();
        assert_eq!(a.window_bits(), 9);
    }

    #[test]
    fn declines_bad_offers() {
        assert_eq!(offer(&[]), None);
        assert_eq!(offer(&["x-webkit-deflate-frame"]), None);
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=08",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
        ] {
            assert_eq!(offer(&[bad]), None, "{bad}");
        }
    }
}
