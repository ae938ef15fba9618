//! Pusher's signatures for channel subscriptions and user sign-in: `key:signature`,
//! where the signature is the hex HMAC-SHA256, with the app's secret, of
//! `socket_id:channel` (private channels), `socket_id:channel:channel_data` (presence)
//! or `socket_id::user::user_data` (sign-in). Compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::app::PusherApp;

type HmacSha256 = Hmac<Sha256>;

/// The hex HMAC-SHA256 of `message` with `secret` (also what the HTTP API and webhooks
/// sign with).
pub fn sign(secret: &str, message: &str) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The `auth` a client must present to subscribe to `channel` (with `channel_data` for
/// a presence channel): what a backend's auth endpoint answers.
pub fn channel_auth(app: &PusherApp, socket_id: &str, channel: &str, data: Option<&str>) -> String {
    let message = match data {
        Some(d) => format!("{socket_id}:{channel}:{d}"),
        None => format!("{socket_id}:{channel}"),
    };
    format!("{}:{}", app.key, sign(&app.secret, &message))
}

/// Whether `auth` is the app's signature of a subscription.
pub fn check_channel(
    app: &PusherApp,
    socket_id: &str,
    channel: &str,
    data: Option<&str>,
    auth: &str,
) -> bool {
    equal(&channel_auth(app, socket_id, channel, data), auth)
}

/// The `auth` of a sign-in with `user_data` (the JSON text the client sends).
pub fn signin_auth(app: &PusherApp, socket_id: &str, user_data: &str) -> String {
    let message = format!("{socket_id}::user::{user_data}");
    format!("{}:{}", app.key, sign(&app.secret, &message))
}

/// Whether `auth` is the app's signature of a sign-in.
pub fn check_signin(app: &PusherApp, socket_id: &str, user_data: &str, auth: &str) -> bool {
    equal(&signin_auth(app, socket_id, user_data), auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key and secret of Pusher's documentation examples
    /// (pusher.com/docs/channels/library_auth_reference/auth-signatures).
    fn app() -> PusherApp {
        PusherApp {
            id: "1".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
            ..PusherApp::default()
        }
    }

    #[test]
    fn private_channel_signature_is_pushers_example() {
        let auth = channel_auth(&app(), "1234.1234", "private-foobar", None);
        assert_eq!(
            auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert!(check_channel(
            &app(),
            "1234.1234",
            "private-foobar",
            None,
            &auth
        ));
    }

    #[test]
    fn presence_channel_signature_is_pushers_example() {
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
        let auth = channel_auth(&app(), "1234.1234", "presence-foobar", Some(data));
        assert_eq!(
            auth,
            "278d425bdf160c739803:31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
        );
    }

    #[test]
    fn signin_signature_covers_the_user_data() {
        // `openssl dgst -sha256 -hmac 7ad3773142a6692b25b8` of `1234.1234::user::{"id":"12345"}`.
        let auth = signin_auth(&app(), "1234.1234", r#"{"id":"12345"}"#);
        assert_eq!(
            auth,
            "278d425bdf160c739803:4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
        );
        assert!(check_signin(
            &app(),
            "1234.1234",
            r#"{"id":"12345"}"#,
            &auth
        ));
        assert!(!check_signin(&app(), "1234.1234", r#"{"id":"1"}"#, &auth));
    }

    #[test]
    fn forged_or_misplaced_signatures_are_refused() {
        let auth = channel_auth(&app(), "1.1", "private-a", None);
        assert!(
            !check_channel(&app(), "1.2", "private-a", None, &auth),
            "other socket"
        );
        assert!(
            !check_channel(&app(), "1.1", "private-b", None, &auth),
            "other channel"
        );
        let mut other = app();
        other.secret = "x".into();
        assert!(
            !check_channel(&other, "1.1", "private-a", None, &auth),
            "other secret"
        );
        assert!(!check_channel(&app(), "1.1", "private-a", None, ""));
        assert!(!check_channel(
            &app(),
            "1.1",
            "private-a",
            None,
            &auth[..auth.len() - 1]
        ));
    }
}
