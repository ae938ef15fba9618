//! Pusher's HTTP API request signature (auth_version 1.0), checked exactly as Pusher
//! checks it, so every Pusher server SDK signs requests pushgate accepts unchanged.
//!
//! ```text
//! auth_signature = hex(HMAC-SHA256(secret, "METHOD\nPATH\nQUERY"))
//! ```
//!
//! QUERY is every query parameter but `auth_signature`, keys lower-cased, sorted by key,
//! joined as `k=v` with `&`, values *not* URL-encoded (the SDKs sign the decoded value,
//! then encode it in the URL). `body_md5` is the hex MD5 of the body; it is required
//! when there is a body, and when present it must match (the Python SDK sends the MD5
//! of the empty body on GET). `auth_timestamp` must be within 600 s of this node's
//! clock. The signature is compared in constant time.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far `auth_timestamp` may be from this node's clock, either way (Pusher's value).
pub const MAX_CLOCK_SKEW_SECS: i64 = 600;

/// Why a request's signature was refused; every one answers 401, as Pusher does.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("Missing required parameter: {0}")]
    Missing(&'static str),
    #[error("Parameter {0} appears twice")]
    Duplicate(String),
    #[error("Unsupported auth_version {0:?}: only 1.0 is supported")]
    Version(String),
    #[error("Unknown auth_key")]
    UnknownKey,
    #[error("Invalid auth_timestamp {0:?}: seconds since the Unix epoch expected")]
    BadTimestamp(String),
    #[error("Timestamp expired: Given timestamp ({given}) not within {MAX_CLOCK_SKEW_SECS}s of server time ({now})")]
    Expired { given: i64, now: i64 },
    #[error("Invalid body_md5: the body's MD5 is {actual}, the request says {given}")]
    BodyMd5 { actual: String, given: String },
    #[error("Invalid signature: you should have sent HmacSHA256Hex({signed:?}, your_secret_key), but you sent \"{given}\"")]
    Signature { signed: String, given: String },
}

/// The signed parameters of one request, decoded and sorted.
#[derive(Debug)]
pub struct SignedQuery {
    params: BTreeMap<String, String>,
    signature: String,
}

impl SignedQuery {
    /// Parses a raw query string; a repeated parameter is refused (which of the two
    /// was signed would be ambiguous).
    pub fn parse(query: &str) -> Result<SignedQuery, AuthError> {
        let mut params = BTreeMap::new();
        let mut signature = None;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let k = k.to_ascii_lowercase();
            if k == "auth_signature" {
                if signature.replace(v.into_owned()).is_some() {
                    return Err(AuthError::Duplicate(k));
                }
            } else if params.insert(k.clone(), v.into_owned()).is_some() {
                return Err(AuthError::Duplicate(k));
            }
        }
        let signature = signature.ok_or(AuthError::Missing("auth_signature"))?;
        for required in ["auth_key", "auth_timestamp", "auth_version"] {
            if !params.contains_key(required) {
                return Err(AuthError::Missing(required));
            }
        }
        Ok(SignedQuery { params, signature })
    }

    /// The key the request says it was signed for.
    pub fn key(&self) -> &str {
        &self.params["auth_key"]
    }

    /// A parameter other than the auth ones (`info`, `filter_by_prefix`, ...).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// The parameters that are not part of the signature scheme.
    pub fn others(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params
            .iter()
            .filter(|(k, _)| !k.starts_with("auth_") && k.as_str() != "body_md5")
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The string the client signed.
    pub fn string_to_sign(&self, method: &str, path: &str) -> String {
        let mut s = format!("{}\n{path}\n", method.to_ascii_uppercase());
        for (i, (k, v)) in self.params.iter().enumerate() {
            if i > 0 {
                s.push('&');
            }
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s
    }

    /// Checks the request against the app's `key` and `secret` at time `now` (Unix
    /// seconds): version, key, signature, body MD5, then the timestamp.
    pub fn verify(
        &self,
        key: &str,
        secret: &str,
        method: &str,
        path: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), AuthError> {
        let version = &self.params["auth_version"];
        if version != "1.0" {
            return Err(AuthError::Version(version.clone()));
        }
        if !bool::from(self.key().as_bytes().ct_eq(key.as_bytes())) {
            return Err(AuthError::UnknownKey);
        }
        let signed = self.string_to_sign(method, path);
        let expected = sign(secret, &signed);
        if !bool::from(expected.as_bytes().ct_eq(self.signature.as_bytes())) {
            return Err(AuthError::Signature {
                signed,
                given: self.signature.clone(),
            });
        }
        match self.params.get("body_md5") {
            Some(given) => {
                let actual = body_md5(body);
                if !given.eq_ignore_ascii_case(&actual) {
                    return Err(AuthError::BodyMd5 {
                        actual,
                        given: given.clone(),
                    });
                }
            }
            None if !body.is_empty() => return Err(AuthError::Missing("body_md5")),
            None => {}
        }
        let ts = &self.params["auth_timestamp"];
        let given: i64 = ts
            .parse()
            .map_err(|_| AuthError::BadTimestamp(ts.clone()))?;
        if given.abs_diff(now) > MAX_CLOCK_SKEW_SECS as u64 {
            return Err(AuthError::Expired { given, now });
        }
        Ok(())
    }
}

/// hex(HMAC-SHA256(secret, message)): API requests, channel auth and webhooks all
/// sign this way.
pub fn sign(secret: &str, message: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The hex MD5 of a body, as `body_md5` carries it.
pub fn body_md5(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Pusher's documented example (pusher.com/docs/channels/library_auth_reference/rest-api).
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const BODY: &str = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    const TS: i64 = 1353088179;
    const SIG: &str = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";

    fn query(sig: &str) -> String {
        format!(
            "auth_key={KEY}&auth_timestamp={TS}&auth_version=1.0&body_md5={}&auth_signature={sig}",
            body_md5(BODY.as_bytes())
        )
    }

    #[test]
    fn pusher_documented_example() {
        assert_eq!(
            body_md5(BODY.as_bytes()),
            "ec365a775a4cd0599faeb73354201b6f"
        );
        let q = SignedQuery::parse(&query(SIG)).unwrap();
        assert_eq!(
            q.string_to_sign("POST", "/apps/3/events"),
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179\
             &auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(
            sign(SECRET, &q.string_to_sign("POST", "/apps/3/events")),
            SIG
        );
        assert_eq!(
            q.verify(
                KEY,
                SECRET,
                "POST",
                "/apps/3/events",
                BODY.as_bytes(),
                TS + 5
            ),
            Ok(())
        );
    }

    #[test]
    fn refuses_a_wrong_signature_path_method_or_secret() {
        let q = SignedQuery::parse(&query(SIG)).unwrap();
        let body = BODY.as_bytes();
        for (method, path, secret) in [
            ("GET", "/apps/3/events", SECRET),
            ("POST", "/apps/4/events", SECRET),
            ("POST", "/apps/3/events", "another secret"),
        ] {
            assert!(matches!(
                q.verify(KEY, secret, method, path, body, TS),
                Err(AuthError::Signature { .. })
            ));
        }
        let forged = SignedQuery::parse(&query(&SIG.replace('d', "e"))).unwrap();
        assert!(matches!(
            forged.verify(KEY, SECRET, "POST", "/apps/3/events", body, TS),
            Err(AuthError::Signature { .. })
        ));
        assert_eq!(
            q.verify("other key", SECRET, "POST", "/apps/3/events", body, TS),
            Err(AuthError::UnknownKey)
        );
    }

    #[test]
    fn refuses_a_stale_or_future_timestamp_and_a_changed_body() {
        let q = SignedQuery::parse(&query(SIG)).unwrap();
        let (m, p, b) = ("POST", "/apps/3/events", BODY.as_bytes());
        assert_eq!(q.verify(KEY, SECRET, m, p, b, TS + 600), Ok(()));
        assert_eq!(q.verify(KEY, SECRET, m, p, b, TS - 600), Ok(()));
        assert_eq!(
            q.verify(KEY, SECRET, m, p, b, TS + 601),
            Err(AuthError::Expired {
                given: TS,
                now: TS + 601
            })
        );
        assert!(matches!(
            q.verify(KEY, SECRET, m, p, b, TS - 601),
            Err(AuthError::Expired { .. })
        ));
        assert!(matches!(
            q.verify(KEY, SECRET, m, p, b"{}", TS),
            Err(AuthError::BodyMd5 { .. })
        ));
    }

    #[test]
    fn values_are_signed_decoded_and_keys_sorted() {
        // What the Python SDK sends for channels_info(attributes=[...]): the comma is
        // encoded in the URL and signed as a comma.
        let secret = "s";
        let signed = "GET\n/apps/1/channels\nauth_key=k&auth_timestamp=10&auth_version=1.0\
                      &filter_by_prefix=presence-&info=user_count,subscription_count";
        let raw = format!(
            "info=user_count%2Csubscription_count&filter_by_prefix=presence-&auth_version=1.0\
             &auth_key=k&auth_timestamp=10&auth_signature={}",
            sign(secret, signed)
        );
        let q = SignedQuery::parse(&raw).unwrap();
        assert_eq!(q.string_to_sign("GET", "/apps/1/channels"), signed);
        assert_eq!(
            q.verify("k", secret, "GET", "/apps/1/channels", b"", 10),
            Ok(())
        );
        assert_eq!(q.get("info"), Some("user_count,subscription_count"));
        assert_eq!(
            q.others().collect::<Vec<_>>(),
            [
                ("filter_by_prefix", "presence-"),
                ("info", "user_count,subscription_count")
            ]
        );
    }

    #[test]
    fn refuses_missing_repeated_and_unsupported_parameters() {
        assert_eq!(
            SignedQuery::parse("auth_key=k&auth_timestamp=1&auth_version=1.0").unwrap_err(),
            AuthError::Missing("auth_signature")
        );
        assert_eq!(
            SignedQuery::parse("auth_key=k&auth_version=1.0&auth_signature=x").unwrap_err(),
            AuthError::Missing("auth_timestamp")
        );
        assert_eq!(
            SignedQuery::parse(
                "auth_key=k&auth_key=j&auth_timestamp=1&auth_version=1.0&auth_signature=x"
            )
            .unwrap_err(),
            AuthError::Duplicate("auth_key".into())
        );
        let q = SignedQuery::parse("auth_key=k&auth_timestamp=1&auth_version=2.0&auth_signature=x")
            .unwrap();
        assert_eq!(
            q.verify("k", "s", "GET", "/", b"", 1),
            Err(AuthError::Version("2.0".into()))
        );
        // A body without body_md5 is unsigned.
        let signed = "POST\n/\nauth_key=k&auth_timestamp=1&auth_version=1.0";
        let q = SignedQuery::parse(&format!(
            "auth_key=k&auth_timestamp=1&auth_version=1.0&auth_signature={}",
            sign("s", signed)
        ))
        .unwrap();
        assert_eq!(
            q.verify("k", "s", "POST", "/", b"{}", 1),
            Err(AuthError::Missing("body_md5"))
        );
        assert_eq!(q.verify("k", "s", "POST", "/", b"", 1), Ok(()));
        let bad_ts = "POST\n/\nauth_key=k&auth_timestamp=soon&auth_version=1.0";
        let q = SignedQuery::parse(&format!(
            "auth_key=k&auth_timestamp=soon&auth_version=1.0&auth_signature={}",
            sign("s", bad_ts)
        ))
        .unwrap();
        assert_eq!(
            q.verify("k", "s", "POST", "/", b"", 1),
            Err(AuthError::BadTimestamp("soon".into()))
        );
    }
}
