//! JWT connection tokens: the [`JwtAuthenticator`].
//!
//! A token is looked for, in order, in `Authorization: Bearer <token>`, the `token`
//! query parameter, and `Sec-WebSocket-Protocol: pushgate.v1, <token>` (browsers
//! cannot set headers; only `pushgate.v1` is echoed back, never the token).
//!
//! Accepted algorithms: HS256 (shared secret), RS256 and ES256 (public keys from a PEM
//! file or a JWKS file, chosen by the token's `kid`). `exp` and `sub` are required and
//! `exp` is enforced without leeway; `nbf` and `iat`, when present, may not be later
//! than now plus a small leeway (clock skew between the issuer and the gateway); `iss`
//! and `aud` are checked when configured. A header naming `crit` extensions is refused:
//! pushgate understands none (RFC 7515 §4.1.11). `sub` must be a valid user id.
//! The claims pushgate reads besides: `channels` (exact names and `prefix*` patterns
//! the connection may subscribe to), `subscribe` (channels joined on connect) and
//! `info` (any JSON value up to 1 KiB, shown with the connection in presence).
//! The token format is described in `docs/security.md`.

use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use pushgate_hub::{Grant, Permissions};
use pushgate_protocol::{validate_channel, validate_user, SUBPROTOCOL};
use serde::Deserialize;
use thiserror::Error;

use crate::auth::{Authenticator, Identity};
use crate::handshake::{Refusal, UpgradeRequest};

/// Where the keys come from; at least one must be given.
#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    /// The HS256 shared secret.
    pub hs256_secret: Option<Vec<u8>>,
    /// A public key in PEM (an RSA key for RS256, a P-256 key for ES256).
    pub public_key_pem: Option<Vec<u8>>,
    /// A JWK set (JSON) of RSA and P-256 public keys, chosen by the token's `kid`.
    pub jwks_json: Option<String>,
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's audiences), if any.
    pub audience: Option<String>,
    /// How far in the future a token's `nbf` and `iat` may be (clock skew); never
    /// applied to `exp`.
    pub leeway: Duration,
}

/// Keys that cannot be used; names the source.
#[derive(Debug, Error)]
pub enum JwtSetupError {
    #[error("no key: give an HS256 secret, a public key file or a JWKS file")]
    NoKey,
    #[error("public key: neither an RSA nor a P-256 EC public key in PEM ({0})")]
    Pem(jsonwebtoken::errors::Error),
    #[error("JWKS: {0}")]
    Jwks(String),
}

/// Why a token was refused (the text of the 401 body or of the error reply).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    #[error("missing token: send it as 'Authorization: Bearer <token>', ?token=, or 'Sec-WebSocket-Protocol: pushgate.v1, <token>'")]
    Missing,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm {0:?} is not accepted")]
    Algorithm(Algorithm),
    #[error("no key for this token (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("token issued in the future (iat)")]
    IssuedInFuture,
    #[error("token header names critical extensions (crit) this gateway does not support")]
    Critical,
    #[error("invalid token signature")]
    Signature,
    #[error("token issuer not accepted")]
    Issuer,
    #[error("token audience not accepted")]
    Audience,
    #[error("invalid token: {0}")]
    Claims(String),
}

/// The claims pushgate reads (`exp`, `iss`, `aud` are checked by the validation).
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    /// Not before (Unix seconds; fractions allowed, RFC 7519 NumericDate).
    nbf: Option<f64>,
    /// Issued at.
    iat: Option<f64>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    /// Shown with the connection in presence (any JSON value, at most
    /// [`MAX_INFO_BYTES`] once serialized).
    #[serde(default)]
    info: Option<serde_json::Value>,
}

/// Largest `info` claim accepted, serialized: it is copied into every presence entry
/// and event of the connection.
pub const MAX_INFO_BYTES: usize = 1024;

/// Verifies JWT connection tokens; see the module documentation.
pub struct JwtAuthenticator {
    hs256: Option<DecodingKey>,
    pem: Option<(Algorithm, DecodingKey)>,
    jwks: AHashMap<String, (Algorithm, DecodingKey)>,
    /// One validation per accepted algorithm (HS256, RS256, ES256), built once.
    validations: [Validation; 3],
    leeway: Duration,
}

const ALGORITHMS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256];

impl JwtAuthenticator {
    pub fn new(config: JwtConfig) -> Result<JwtAuthenticator, JwtSetupError> {
        let hs256 = config.hs256_secret.as_deref().map(DecodingKey::from_secret);
        let pem = match &config.public_key_pem {
            None => None,
            Some(pem) => Some(match DecodingKey::from_rsa_pem(pem) {
                Ok(k) => (Algorithm::RS256, k),
                Err(_) => (
                    Algorithm::ES256,
                    DecodingKey::from_ec_pem(pem).map_err(JwtSetupError::Pem)?,
                ),
            }),
        };
        let jwks = match &config.jwks_json {
            None => AHashMap::new(),
            Some(json) => load_jwks(json)?,
        };
        if hs256.is_none() && pem.is_none() && jwks.is_empty() {
            return Err(JwtSetupError::NoKey);
        }
        let validations = ALGORITHMS.map(|alg| {
            let mut v = Validation::new(alg);
            v.leeway = 0;
            v.validate_nbf = false; // checked by `identity`, with the leeway exp does not get
            let mut required = vec!["exp", "sub"];
            if let Some(iss) = &config.issuer {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            match &config.audience {
                Some(aud) => {
                    v.set_audience(&[aud]);
                    required.push("aud");
                }
                None => v.validate_aud = false,
            }
            v.set_required_spec_claims(&required);
            v
        });
        Ok(JwtAuthenticator {
            hs256,
            pem,
            jwks,
            validations,
            leeway: config.leeway,
        })
    }

    /// Verifies a token and reads the identity it grants.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.crit.is_some() {
            return Err(TokenError::Critical);
        }
        let alg = header.alg;
        let Some(i) = ALGORITHMS.iter().position(|a| *a == alg) else {
            return Err(TokenError::Algorithm(alg));
        };
        let key = match alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            _ => match header.kid.as_deref().and_then(|kid| self.jwks.get(kid)) {
                Some((a, k)) if *a == alg => Some(k),
                Some(_) => None,
                None => self.pem.as_ref().filter(|(a, _)| *a == alg).map(|(_, k)| k),
            },
        };
        let Some(key) = key else {
            return Err(match alg {
                Algorithm::HS256 => TokenError::Algorithm(alg),
                _ => TokenError::UnknownKey(header.kid),
            });
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validations[i])
            .map_err(token_error)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        identity(data.claims, now + self.leeway)
    }
}

/// Checks the claims pushgate reads and builds the identity; `latest` is now plus the
/// leeway, the latest `nbf` or `iat` accepted.
fn identity(c: Claims, latest: Duration) -> Result<Identity, TokenError> {
    let latest = latest.as_secs_f64();
    if c.nbf.is_some_and(|nbf| nbf > latest) {
        return Err(TokenError::NotYetValid);
    }
    if c.iat.is_some_and(|iat| iat > latest) {
        return Err(TokenError::IssuedInFuture);
    }
    validate_user(&c.sub).map_err(|e| TokenError::Claims(format!("sub: {e}")))?;
    let permissions =
        Permissions::new(&c.channels).map_err(|e| TokenError::Claims(format!("channels: {e}")))?;
    for ch in &c.subscribe {
        validate_channel(ch).map_err(|e| TokenError::Claims(format!("subscribe {ch:?}: {e}")))?;
        if !permissions.allows(ch) {
            return Err(TokenError::Claims(format!(
                "subscribe {ch:?} is not allowed by the channels claim"
            )));
        }
    }
    let info = match c.info {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => {
            let text = v.to_string();
            if text.len() > MAX_INFO_BYTES {
                return Err(TokenError::Claims(format!(
                    "info: {} bytes, at most {MAX_INFO_BYTES}",
                    text.len()
                )));
            }
            Some(Arc::from(text))
        }
    };
    Ok(Identity {
        user: Some(c.sub),
        grant: Some(Grant {
            permissions: Arc::new(permissions),
            expires: c.exp,
            info,
        }),
        subscribe: c.subscribe,
    })
}

fn token_error(e: jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => TokenError::Expired,
        K::InvalidSignature => TokenError::Signature,
        K::InvalidIssuer => TokenError::Issuer,
        K::InvalidAudience => TokenError::Audience,
        K::MissingRequiredClaim(c) => TokenError::Claims(format!("missing claim {c:?}")),
        K::Json(_) => TokenError::Claims("claims of the wrong type".into()),
        _ => TokenError::Malformed,
    }
}

/// Reads a JWK set: RSA keys (RS256) and P-256 keys (ES256), each with a `kid`.
fn load_jwks(json: &str) -> Result<AHashMap<String, (Algorithm, DecodingKey)>, JwtSetupError> {
    let set: JwkSet = serde_json::from_str(json).map_err(|e| JwtSetupError::Jwks(e.to_string()))?;
    let mut keys = AHashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            return Err(JwtSetupError::Jwks("every key needs a \"kid\"".into()));
        };
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => {
                return Err(JwtSetupError::Jwks(format!(
                    "key {kid:?}: only RSA (RS256) and P-256 EC (ES256) keys are accepted"
                )))
            }
        };
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| JwtSetupError::Jwks(format!("key {kid:?}: {e}")))?;
        keys.insert(kid, (alg, key));
    }
    Ok(keys)
}

/// The token of an upgrade request: `Authorization: Bearer`, then `?token=`, then the
/// `Sec-WebSocket-Protocol` entry that is not `pushgate.v1`.
pub fn token_from(req: &UpgradeRequest) -> Option<&str> {
    if let Some(v) = req.header("authorization") {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            return Some(v[7..].trim());
        }
    }
    if let Some(t) = req.query_param("token").filter(|t| !t.is_empty()) {
        return Some(t);
    }
    req.headers
        .iter()
        .filter(|(n, _)| n == "sec-websocket-protocol")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .find(|t| !t.is_empty() && *t != SUBPROTOCOL)
}

impl Authenticator for JwtAuthenticator {
    fn authenticate(&self, req: &UpgradeRequest) -> Result<Identity, Refusal> {
        let token = token_from(req).ok_or(TokenError::Missing);
        token
            .and_then(|t| self.verify(t))
            .map_err(|e| Refusal::new(401, e.to_string()))
    }

    fn refresh(&self, token: &str) -> Result<Identity, String> {
        self.verify(token).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn auth() -> JwtAuthenticator {
        JwtAuthenticator::new(JwtConfig {
            hs256_secret: Some(SECRET.to_vec()),
            issuer: Some("issuer".into()),
            leeway: Duration::from_secs(5),
            ..JwtConfig::default()
        })
        .unwrap()
    }

    fn mint(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn in_an_hour() -> u64 {
        jsonwebtoken::get_current_timestamp() + 3600
    }

    #[test]
    fn a_valid_token_grants_its_channels() {
        let t = mint(serde_json::json!({
            "sub": "alice", "exp": in_an_hour(), "iss": "issuer",
            "channels": ["news", "user:alice:*"], "subscribe": ["news"]
        }));
        let id = auth().verify(&t).unwrap();
        assert_eq!(id.user.as_deref(), Some("alice"));
        assert_eq!(id.subscribe, vec!["news".to_string()]);
        let g = id.grant.unwrap();
        assert!(g.permissions.allows("user:alice:x") && !g.permissions.allows("sport"));
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let a = auth();
        let exp = in_an_hour();
        let cases = [
            (
                serde_json::json!({"sub": "a", "exp": 1, "iss": "issuer"}),
                TokenError::Expired,
            ),
            (
                serde_json::json!({"sub": "a", "exp": exp, "iss": "other"}),
                TokenError::Issuer,
            ),
            (
                serde_json::json!({"sub": "a", "exp": exp}),
                TokenError::Claims("missing claim \"iss\"".into()),
            ),
        ];
        for (claims, want) in cases {
            assert_eq!(
                a.verify(&mint(claims.clone())).unwrap_err(),
                want,
                "{claims}"
            );
        }
        let c = serde_json::json!({"sub": "a", "exp": exp, "iss": "issuer", "subscribe": ["x"]});
        assert!(matches!(a.verify(&mint(c)), Err(TokenError::Claims(_))));
        let forged = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({"sub": "a", "exp": exp, "iss": "issuer"}),
            &jsonwebtoken::EncodingKey::from_secret(b"not the secret, not the secret!!"),
        )
        .unwrap();
        assert_eq!(a.verify(&forged).unwrap_err(), TokenError::Signature);
        assert_eq!(a.verify("garbage").unwrap_err(), TokenError::Malformed);
        // "alg":"none" is never accepted.
        let none = format!(
            "{}.{}.",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
            "eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5LCJpc3MiOiJpc3N1ZXIifQ"
        );
        assert!(a.verify(&none).is_err());
    }

    #[test]
    fn future_nbf_or_iat_and_critical_headers_are_refused() {
        let a = auth();
        let now = jsonwebtoken::get_current_timestamp();
        let claims = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"sub": "a", "exp": now + 7200, "iss": "issuer"});
            c.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            c
        };
        let cases = [
            (
                serde_json::json!({"nbf": now + 86400}),
                Err(TokenError::NotYetValid),
            ),
            (
                serde_json::json!({"iat": now + 86400}),
                Err(TokenError::IssuedInFuture),
            ),
            // Within the 5 s leeway (an issuer whose clock is slightly ahead).
            (serde_json::json!({"nbf": now + 2, "iat": now + 2}), Ok(())),
            (
                serde_json::json!({"nbf": now - 10, "iat": now - 10}),
                Ok(()),
            ),
            (serde_json::json!({"nbf": (now + 2) as f64 + 0.5}), Ok(())),
        ];
        for (extra, want) in cases {
            let got = a.verify(&mint(claims(extra.clone()))).map(drop);
            assert_eq!(got, want, "{extra}");
        }
        let header = jsonwebtoken::Header {
            crit: Some(vec!["exp".into()]),
            ..Default::default()
        };
        let crit = jsonwebtoken::encode(
            &header,
            &claims(serde_json::json!({})),
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(a.verify(&crit).unwrap_err(), TokenError::Critical);
    }

    #[test]
    fn sub_must_be_a_valid_user_id() {
        let a = auth();
        let exp = in_an_hour();
        for bad in ["a b", "", "a\0b", &"u".repeat(129)] {
            let c = serde_json::json!({"sub": bad, "exp": exp, "iss": "issuer"});
            assert!(
                matches!(a.verify(&mint(c)), Err(TokenError::Claims(m)) if m.starts_with("sub:")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_token_is_found_in_header_query_or_subprotocol() {
        let req = |headers: &[(&str, &str)], query: Option<&str>| UpgradeRequest {
            path: "/ws".into(),
            query: query.map(Into::into),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        };
        assert_eq!(
            token_from(&req(&[("authorization", "Bearer a.b.c")], Some("token=x"))),
            Some("a.b.c")
        );
        assert_eq!(
            token_from(&req(&[], Some("x=1&token=q.r.s"))),
            Some("q.r.s")
        );
        assert_eq!(
            token_from(&req(
                &[("sec-websocket-protocol", "pushgate.v1, t.o.k")],
                None
            )),
            Some("t.o.k")
        );
        assert_eq!(
            token_from(&req(&[("sec-websocket-protocol", "pushgate.v1")], None)),
            None
        );
    }
}
