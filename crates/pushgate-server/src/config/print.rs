//! `pushgate config print`: the effective configuration as TOML, with every secret
//! replaced by `<redacted>`, so that the output can be pasted into a ticket or a log.
//!
//! Secrets: `jwt_hs256_secret`, `http_token`, `grpc_token`, `redis_sentinel_password`,
//! the password of each `redis_url` seed, each `[[pusher_apps]]` `secret`. An empty
//! secret (the setting is off) is shown empty. The output is therefore not a config
//! to start from when secrets are set: they would be `<redacted>` literally.

use pushgate_broker::redis::deployment::{redact_url, REDACTED};

use super::Config;

impl Config {
    /// The effective configuration as TOML, secrets redacted.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.redacted()).expect("the config always serializes")
    }

    /// A copy without secrets.
    fn redacted(&self) -> Config {
        let mut c = self.clone();
        for secret in [
            &mut c.jwt_hs256_secret,
            &mut c.http_token,
            &mut c.grpc_token,
            &mut c.redis_sentinel_password,
        ] {
            hide(secret);
        }
        c.redis_url = redact_url(&c.redis_url);
        for app in &mut c.pusher_apps {
            hide(&mut app.secret);
        }
        c
    }
}

fn hide(secret: &mut String) {
    if !secret.is_empty() {
        *secret = REDACTED.to_owned();
    }
}
