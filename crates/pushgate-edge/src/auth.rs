//! Who is connecting: the `Authenticator` seam.
//!
//! The default, [`Anonymous`], admits everyone. It can take the user id from a header
//! that an upstream proxy sets after authenticating the client; that header must be
//! stripped from client requests by the proxy, since pushgate trusts it as-is.
//! Token authentication is the [`JwtAuthenticator`](crate::JwtAuthenticator).

use pushgate_hub::Grant;
use pushgate_protocol::validate_user;

use crate::handshake::{Refusal, UpgradeRequest};

/// The identity a connection carries for its lifetime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The user, for user-targeted publications; `None` for anonymous connections.
    pub user: Option<String>,
    /// What a token allows (channels, expiry); `None` for connections without a token,
    /// which may subscribe to any channel and never expire.
    pub grant: Option<Grant>,
    /// Channels joined on connect (already checked against the grant).
    pub subscribe: Vec<String>,
}

/// Decides whether an upgrade request may connect, and as whom.
pub trait Authenticator: Send + Sync + 'static {
    /// Returns the identity, or a refusal (an HTTP status, typically 401 or 403).
    fn authenticate(&self, req: &UpgradeRequest) -> Result<Identity, Refusal>;

    /// Verifies a fresh token sent by an open connection (`refresh` command). Returns
    /// the error reply's message on failure. By default there are no tokens to refresh.
    fn refresh(&self, _token: &str) -> Result<Identity, String> {
        Err("this gateway does not use tokens".into())
    }
}

/// Admits every connection; optionally reads the user id from a trusted header.
#[derive(Debug, Clone, Default)]
pub struct Anonymous {
    /// Lower-case header name set by a trusted upstream proxy, e.g. `x-pushgate-user`.
    pub user_header: Option<String>,
}

impl Authenticator for Anonymous {
    fn authenticate(&self, req: &UpgradeRequest) -> Result<Identity, Refusal> {
        let Some(name) = &self.user_header else {
            return Ok(Identity::default());
        };
        match req.header(name).map(str::trim) {
            None | Some("") => Ok(Identity::default()),
            Some(u) => match validate_user(u) {
                Ok(()) => Ok(Identity {
                    user: Some(u.to_owned()),
                    ..Identity::default()
                }),
                Err(e) => Err(Refusal::new(400, format!("malformed {name} header: {e}"))),
            },
        }
    }
}
