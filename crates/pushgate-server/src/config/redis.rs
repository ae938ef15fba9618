//! The Redis deployment behind `broker = "redis"`: `redis_url`, `redis_mode`,
//! `redis_sentinel_master`, the sentinels' login, `redis_tls_ca_file` (docs/cluster.md, "Redis deployments").

use super::error::invalid;
use super::{Config, ConfigError, RedisMode};

impl Config {
    /// `redis_url`, the mode with its master name, and the CA file, as the broker
    /// takes them.
    pub(super) fn redis_deployment(
        &self,
    ) -> (&str, pushgate_broker::RedisMode, Option<&std::path::Path>) {
        let mode = match self.redis_mode {
            RedisMode::Standalone => pushgate_broker::RedisMode::Standalone,
            RedisMode::Cluster => pushgate_broker::RedisMode::Cluster,
            RedisMode::Sentinel => pushgate_broker::RedisMode::Sentinel {
                master: self.redis_sentinel_master.clone(),
            },
        };
        let ca = (!self.redis_tls_ca_file.is_empty())
            .then(|| std::path::Path::new(self.redis_tls_ca_file.as_str()));
        (&self.redis_url, mode, ca)
    }

    /// The deployment parses; the error names the setting at fault.
    pub(super) fn validate_redis_deployment(&self) -> Result<(), ConfigError> {
        use pushgate_broker::DeploymentError as E;
        let (url, mode, ca) = self.redis_deployment();
        let parsed =
            pushgate_broker::redis::deployment::Deployment::parse(url, mode, ca).and_then(|d| {
                d.with_sentinel_login(
                    Some(&self.redis_sentinel_username),
                    Some(&self.redis_sentinel_password),
                )
            });
        if let Err(e) = parsed {
            let field = match e {
                E::NoMaster => "redis_sentinel_master",
                E::Ca(..) | E::CaWithoutTls => "redis_tls_ca_file",
                E::SentinelUserWithoutPassword => "redis_sentinel_password",
                E::SentinelLoginWithoutSentinel if self.redis_sentinel_password.is_empty() => {
                    "redis_sentinel_username"
                }
                E::SentinelLoginWithoutSentinel => "redis_sentinel_password",
                _ => "redis_url",
            };
            return Err(invalid(field, e.to_string()));
        }
        Ok(())
    }
}
