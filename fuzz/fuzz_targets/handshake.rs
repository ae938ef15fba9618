//! The WebSocket upgrade parser and what reads the parsed request (the token lookup, the
//! JWT verifier, the trusted user header) on arbitrary request heads: never a panic;
//! an accepted upgrade is for the endpoint's path, with a key that decodes to 16 bytes,
//! a head no longer than the input, and the same outcome whether the bytes arrived at
//! once or the request was re-parsed as it grew (as the edge does).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pushgate_edge::handshake::{accept_key, parse, Parsed};
use pushgate_edge::{token_from, Anonymous, Authenticator, JwtAuthenticator, JwtConfig};

fn jwt() -> &'static JwtAuthenticator {
    static JWT: OnceLock<JwtAuthenticator> = OnceLock::new();
    JWT.get_or_init(|| {
        JwtAuthenticator::new(JwtConfig {
            hs256_secret: Some(b"fuzz-secret-fuzz-secret-fuzz-secret!".to_vec()),
            ..JwtConfig::default()
        })
        .expect("an HS256 key")
    })
}

fuzz_target!(|data: &[u8]| {
    let whole = parse(data, "/ws");
    if let Ok(Parsed::Complete(req, key, n)) = &whole {
        assert!(*n <= data.len());
        assert_eq!(req.path, "/ws");
        assert_eq!(accept_key(key).len(), 28);
        // Re-parsing a longer buffer (the head plus frame bytes) gives the same head.
        let mut longer = data[..*n].to_vec();
        longer.extend_from_slice(b"\x81\x80");
        assert!(matches!(parse(&longer, "/ws"), Ok(Parsed::Complete(_, _, m)) if m == *n));
        if let Some(token) = token_from(req) {
            let _ = jwt().verify(token);
        }
        let header = Anonymous {
            user_header: Some("x-user".into()),
        };
        if let Ok(identity) = header.authenticate(req) {
            if let Some(user) = identity.user {
                assert_eq!(pushgate_protocol::validate_user(&user), Ok(()));
            }
        }
    }
    if let Err(refusal) = &whole {
        assert!((400..600).contains(&refusal.status));
    }
    // Any text at all through the token verifier.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = jwt().verify(text);
    }
});
