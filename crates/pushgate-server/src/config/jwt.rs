//! Connection tokens (`auth_mode = "jwt"`): the mode's requirements, the key files,
//! the clock leeway and the refresh rate.

use std::path::Path;
use std::time::Duration;

use super::error::invalid;
use super::{AuthMode, Config, ConfigError};

impl Config {
    /// What `auth_mode` needs, the key files, the refresh grace and the allowed origins.
    pub(super) fn validate_auth(&self) -> Result<(), ConfigError> {
        match self.auth_mode {
            AuthMode::Anonymous => {}
            AuthMode::Jwt => {
                if self.jwt_hs256_secret.is_empty()
                    && self.jwt_public_key_file.is_empty()
                    && self.jwks_file.is_empty()
                {
                    return Err(invalid(
                        "auth_mode",
                        "jwt needs jwt_hs256_secret, jwt_public_key_file or jwks_file",
                    ));
                }
                if !self.trusted_user_header.is_empty() {
                    return Err(invalid(
                        "trusted_user_header",
                        "only for auth_mode = \"anonymous\"; with jwt the token names the user",
                    ));
                }
            }
        }
        if !self.jwt_hs256_secret.is_empty() && self.jwt_hs256_secret.len() < 32 {
            return Err(invalid(
                "jwt_hs256_secret",
                "at least 32 bytes (HS256 needs a 256-bit secret)",
            ));
        }
        for (field, path) in [
            ("jwt_public_key_file", &self.jwt_public_key_file),
            ("jwks_file", &self.jwks_file),
        ] {
            if !path.is_empty() && !Path::new(path).is_file() {
                return Err(invalid(field, format!("{path}: no such file")));
            }
        }
        if self.token_refresh_grace_ms > 24 * 3600 * 1000 {
            return Err(invalid("token_refresh_grace_ms", "at most one day"));
        }
        for o in &self.allowed_origins {
            // An origin is scheme://host[:port]; a browser's Origin header never carries
            // a path, query or user info, so an entry with one could never match.
            let ok = o.split_once("://").is_some_and(|(scheme, host)| {
                let host = host.strip_suffix('/').unwrap_or(host);
                !scheme.is_empty() && !host.is_empty() && !host.contains(['/', '?', '#', '@'])
            });
            if !ok || o.contains(char::is_whitespace) {
                return Err(invalid(
                    "allowed_origins",
                    format!(
                        "{o:?}: an origin is scheme://host[:port] without a path, e.g. https://app.example.com"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The clock leeway and the refresh rate of token connections.
    pub(super) fn validate_token_limits(&self) -> Result<(), ConfigError> {
        if self.jwt_leeway_ms > 300_000 {
            return Err(invalid("jwt_leeway_ms", "at most 300000 (five minutes)"));
        }
        if self.max_refreshes_per_minute > u8::MAX as u32 {
            return Err(invalid("max_refreshes_per_minute", "at most 255"));
        }
        Ok(())
    }

    /// The connection-token settings (auth_mode = "jwt"), with the key files read.
    pub fn jwt(&self) -> Result<pushgate_edge::JwtConfig, ConfigError> {
        let read = |field: &'static str, path: &str| -> Result<Option<Vec<u8>>, ConfigError> {
            if path.is_empty() {
                return Ok(None);
            }
            std::fs::read(path)
                .map(Some)
                .map_err(|e| invalid(field, format!("{path}: {e}")))
        };
        let jwks = read("jwks_file", &self.jwks_file)?
            .map(|b| String::from_utf8(b).map_err(|_| invalid("jwks_file", "not UTF-8")))
            .transpose()?;
        let some = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        Ok(pushgate_edge::JwtConfig {
            hs256_secret: some(&self.jwt_hs256_secret).map(String::into_bytes),
            public_key_pem: read("jwt_public_key_file", &self.jwt_public_key_file)?,
            jwks_json: jwks,
            issuer: some(&self.jwt_issuer),
            audience: some(&self.jwt_audience),
            leeway: Duration::from_millis(self.jwt_leeway_ms),
        })
    }
}
