//! Which Redis deployment the broker talks to, from `redis_mode` and `redis_url`:
//! one standalone primary, a Redis Cluster found from seed nodes, or a primary found
//! through Sentinel; with TLS and an ACL user for each.
//!
//! `redis_url` is a comma-separated list of seeds. The first is a whole URL,
//! `redis://` or `rediss://` (TLS), with the login: `redis[s]://[[user]:password@]host[:port]`.
//! The others are either whole URLs of the same scheme and login, or `host[:port]`,
//! which take the first one's. A standalone deployment has exactly one.
//!
//! The login of `redis_url` is the data nodes' (the primary and replicas, or the
//! cluster's nodes). Sentinels have a login of their own (`redis_sentinel_username`,
//! `redis_sentinel_password`): Redis configures theirs apart (a sentinel's
//! `requirepass` or ACL users are its own, and sentinels authenticate to each other
//! with `sentinel sentinel-user/sentinel-pass`, to the data nodes with `auth-user/
//! auth-pass`), and an operator may well give the application a data-node user that
//! the sentinels do not know.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;
use tokio_rustls::rustls;

/// The kind of deployment (`redis_mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// One primary: today's deployment.
    Standalone,
    /// A Redis Cluster: the seeds are any of its nodes; the slot map comes from them.
    Cluster,
    /// Sentinels (the seeds, default port 26379) name the primary of `master`.
    Sentinel { master: String },
}

/// A deployment: its mode, seeds, login and TLS.
#[derive(Clone)]
pub struct Deployment {
    pub mode: Mode,
    /// `host:port` of each seed, in the order given.
    pub seeds: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The sentinels' login (Sentinel mode), apart from the data nodes'.
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<String>,
    /// `rediss://`: every connection (nodes and sentinels) is TLS, verified against
    /// the CA file.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Deployment {
    // Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("mode", &self.mode)
            .field("seeds", &self.seeds)
            .field("username", &self.username)
            .field("sentinel_username", &self.sentinel_username)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// A `redis_url` (with `redis_mode`, `redis_tls_ca_file`) that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DeploymentError {
    #[error("redis_url {0:?}: expected redis[s]://[[user]:password@]host[:port][,host[:port]...]")]
    Url(String),
    #[error("redis_url: every seed must use the same scheme and login as the first")]
    MixedSeeds,
    #[error("redis_url: redis_mode = \"standalone\" takes one address, not {0}")]
    SeveralStandalone(usize),
    #[error("redis_url: rediss:// (TLS) needs redis_tls_ca_file, the CA that signed Redis's certificate")]
    NoCa,
    #[error("redis_tls_ca_file is set but redis_url is not rediss://")]
    CaWithoutTls,
    #[error("redis_tls_ca_file {0:?}: {1}")]
    Ca(PathBuf, String),
    #[error("redis_sentinel_master must not be empty with redis_mode = \"sentinel\"")]
    NoMaster,
    #[error("redis_sentinel_username and redis_sentinel_password are for redis_mode = \"sentinel\" only")]
    SentinelLoginWithoutSentinel,
    #[error(
        "redis_sentinel_username needs redis_sentinel_password (AUTH takes a user and a password)"
    )]
    SentinelUserWithoutPassword,
}

/// One seed URL, split.
struct Seed {
    tls: bool,
    username: Option<String>,
    password: Option<String>,
    addr: String,
}

fn parse_seed(url: &str, default_port: u16) -> Result<Seed, DeploymentError> {
    let bad = || DeploymentError::Url(redact_url(url));
    let (tls, rest) = match (url.strip_prefix("rediss://"), url.strip_prefix("redis://")) {
        (Some(r), _) => (true, r),
        (None, Some(r)) => (false, r),
        _ => return Err(bad()),
    };
    let rest = rest.split('/').next().unwrap_or_default();
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let addr = host_port(host, default_port).ok_or_else(bad)?;
    let (username, password) = match auth {
        None => (None, None),
        Some(a) => match a.split_once(':') {
            Some((u, p)) => ((!u.is_empty()).then(|| u.to_owned()), Some(p.to_owned())),
            None => (None, Some(a.to_owned())),
        },
    };
    Ok(Seed {
        tls,
        username,
        password,
        addr,
    })
}

/// `host[:port]` with the default port added; `None` if empty or malformed.
fn host_port(host: &str, default_port: u16) -> Option<String> {
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    if host.starts_with('[') {
        // [v6] or [v6]:port
        return match host.rsplit_once("]:") {
            Some((_, p)) => p.parse::<u16>().ok().map(|_| host.to_owned()),
            None if host.ends_with(']') => Some(format!("{host}:{default_port}")),
            None => None,
        };
    }
    match host.split_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => Some(host.to_owned()),
        Some(_) => None,
        None => Some(format!("{host}:{default_port}")),
    }
}

/// What stands for a password in [`redact_url`].
pub const REDACTED: &str = "<redacted>";

/// `redis_url` without its passwords (every seed's), for error messages and `config
/// print` (`redis_url` is a secret): `redis://app:<redacted>@a:7000,b:7001`.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(redact_seed)
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_seed(seed: &str) -> String {
    let (scheme, rest) = match seed.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, seed),
    };
    let Some((auth, host)) = rest.rsplit_once('@') else {
        return seed.to_owned();
    };
    let login = match auth.split_once(':') {
        Some((user, _)) => format!("{user}:{REDACTED}"),
        None => REDACTED.to_owned(),
    };
    match scheme {
        Some(s) => format!("{s}://{login}@{host}"),
        None => format!("{login}@{host}"),
    }
}

impl Deployment {
    /// Parses `redis_url` for `mode`, loading the CA file for `rediss://`.
    pub fn parse(
        url: &str,
        mode: Mode,
        ca_file: Option<&Path>,
    ) -> Result<Deployment, DeploymentError> {
        if let Mode::Sentinel { master } = &mode {
            if master.is_empty() {
                return Err(DeploymentError::NoMaster);
            }
        }
        let default_port = match mode {
            Mode::Sentinel { .. } => 26379,
            _ => 6379,
        };
        let mut parts = url.split(',').map(str::trim);
        let first = parse_seed(parts.next().unwrap_or_default(), default_port)?;
        let mut seeds = vec![first.addr.clone()];
        for p in parts {
            if p.contains("://") {
                let s = parse_seed(p, default_port)?;
                if (s.tls, &s.username, &s.password)
                    != (first.tls, &first.username, &first.password)
                {
                    return Err(DeploymentError::MixedSeeds);
                }
                seeds.push(s.addr);
            } else {
                let addr = host_port(p, default_port)
                    .ok_or_else(|| DeploymentError::Url(redact_url(url)))?;
                seeds.push(addr);
            }
        }
        if mode == Mode::Standalone && seeds.len() > 1 {
            return Err(DeploymentError::SeveralStandalone(seeds.len()));
        }
        let tls = match (first.tls, ca_file) {
            (true, Some(ca)) => Some(Arc::new(client_config(ca)?)),
            (true, None) => return Err(DeploymentError::NoCa),
            (false, Some(_)) => return Err(DeploymentError::CaWithoutTls),
            (false, None) => None,
        };
        Ok(Deployment {
            mode,
            seeds,
            username: first.username,
            password: first.password,
            sentinel_username: None,
            sentinel_password: None,
            tls,
        })
    }

    /// Sets the sentinels' login (each `None` or empty: not given).
    pub fn with_sentinel_login(
        mut self,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Deployment, DeploymentError> {
        let given = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
        let (username, password) = (given(username), given(password));
        if (username.is_some() || password.is_some()) && !matches!(self.mode, Mode::Sentinel { .. })
        {
            return Err(DeploymentError::SentinelLoginWithoutSentinel);
        }
        if username.is_some() && password.is_none() {
            return Err(DeploymentError::SentinelUserWithoutPassword);
        }
        self.sentinel_username = username;
        self.sentinel_password = password;
        Ok(self)
    }
}

/// A rustls client that trusts only the CA file's certificates.
fn client_config(ca: &Path) -> Result<rustls::ClientConfig, DeploymentError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let err = |e: String| DeploymentError::Ca(ca.to_owned(), e);
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| err(e.to_string()))?;
    for c in certs {
        let c = c.map_err(|e| err(e.to_string()))?;
        roots.add(c).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("no certificate in it".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_forms() {
        let d = Deployment::parse("redis://127.0.0.1", Mode::Standalone, None).unwrap();
        assert_eq!(d.seeds, ["127.0.0.1:6379"]);
        let d = Deployment::parse("redis://:s3cret@cache:7000/0", Mode::Standalone, None).unwrap();
        assert_eq!(
            (d.seeds[0].as_str(), d.password.as_deref()),
            ("cache:7000", Some("s3cret"))
        );
        let d = Deployment::parse("redis://app:pw@[::1]:6380", Mode::Standalone, None).unwrap();
        assert_eq!(d.username.as_deref(), Some("app"));
        assert_eq!(d.seeds, ["[::1]:6380"]);
        let d = Deployment::parse(
            "redis://app:pw@a:7000, b:7001,redis://app:pw@c",
            Mode::Cluster,
            None,
        )
        .unwrap();
        assert_eq!(d.seeds, ["a:7000", "b:7001", "c:6379"]);
        assert_eq!(d.password.as_deref(), Some("pw"));
        let m = Mode::Sentinel {
            master: "mymaster".into(),
        };
        let d = Deployment::parse("redis://s1,s2:5000", m, None).unwrap();
        assert_eq!(d.seeds, ["s1:26379", "s2:5000"]);
        let d = d.with_sentinel_login(Some("watch"), Some("pw")).unwrap();
        assert_eq!(d.sentinel_username.as_deref(), Some("watch"));
        assert!(!format!("{d:?}").contains("pw"), "{d:?}");
    }

    #[test]
    fn a_sentinel_login_needs_sentinel_mode_and_a_password() {
        let d = || Deployment::parse("redis://a", Mode::Cluster, None).unwrap();
        assert_eq!(
            d().with_sentinel_login(None, Some("pw")).unwrap_err(),
            DeploymentError::SentinelLoginWithoutSentinel
        );
        assert!(d().with_sentinel_login(Some(""), Some("")).is_ok());
        let m = Mode::Sentinel { master: "m".into() };
        let s = Deployment::parse("redis://a", m, None).unwrap();
        assert_eq!(
            s.with_sentinel_login(Some("u"), None).unwrap_err(),
            DeploymentError::SentinelUserWithoutPassword
        );
    }

    #[test]
    fn refuses_what_cannot_work() {
        let p = |u: &str, m: Mode| Deployment::parse(u, m, None).unwrap_err();
        assert!(matches!(
            p("http://x", Mode::Standalone),
            DeploymentError::Url(_)
        ));
        assert!(matches!(
            p("redis://", Mode::Standalone),
            DeploymentError::Url(_)
        ));
        assert!(matches!(
            p("redis://a:x", Mode::Standalone),
            DeploymentError::Url(_)
        ));
        assert_eq!(
            p("redis://a,b", Mode::Standalone),
            DeploymentError::SeveralStandalone(2)
        );
        assert_eq!(
            p("redis://a,redis://u:p@b", Mode::Cluster),
            DeploymentError::MixedSeeds
        );
        assert_eq!(p("rediss://a", Mode::Cluster), DeploymentError::NoCa);
        let m = Mode::Sentinel { master: "".into() };
        assert_eq!(p("redis://a", m), DeploymentError::NoMaster);
        let e =
            Deployment::parse("redis://a", Mode::Standalone, Some(Path::new("/x"))).unwrap_err();
        assert_eq!(e, DeploymentError::CaWithoutTls);
        let e = Deployment::parse(
            "rediss://a",
            Mode::Standalone,
            Some(Path::new("/nonexistent")),
        )
        .unwrap_err();
        assert!(matches!(e, DeploymentError::Ca(..)));
        // The password never shows in the error.
        let e = p("redis://u:hunter2@", Mode::Standalone).to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn redacts_every_seeds_password_and_keeps_the_rest() {
        assert_eq!(
            redact_url("rediss://app:pw@a:7000, b:7001,redis://app:pw@c"),
            "rediss://app:<redacted>@a:7000, b:7001,redis://app:<redacted>@c"
        );
        assert_eq!(redact_url("redis://:pw@a/0"), "redis://:<redacted>@a/0");
        assert_eq!(redact_url("redis://pw@a"), "redis://<redacted>@a");
        assert_eq!(redact_url("u:pw@a"), "u:<redacted>@a");
        assert_eq!(redact_url("redis://a:6379"), "redis://a:6379");
    }
}
