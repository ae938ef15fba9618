//! Where each setting came from, so that a configuration error names its source: the
//! file and line (with the line itself), the environment variable, or the flag.
//!
//! [`Sources`] assembles a [`Config`] in order (defaults, file, environment, flags),
//! remembering which source set each field last; [`Sources::finish`] validates and
//! points a field's error at that source.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::config::{Config, ConfigError};

/// Settings whose values never appear in an error message (the line is shown as
/// `field = <hidden>`).
/// (`secret` is a `[[pusher_apps]]` table's.)
const SECRETS: &[&str] = &[
    "grpc_token",
    "http_token",
    "jwt_hs256_secret",
    "redis_url",
    "redis_sentinel_password",
    "secret",
];

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a TOML file (counted from 1), and its text.
    File {
        path: String,
        line: usize,
        text: String,
    },
    /// An environment variable, e.g. `PUSHGATE_WS_ADDR`.
    Env(String),
    /// A command-line flag, e.g. `--shards` or `--set slow_policy`.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, .. } => write!(f, "{path}:{line}"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

impl Origin {
    /// The line `offset` (a byte offset into `text`) is on.
    pub(crate) fn file_line(path: &str, text: &str, offset: usize) -> Origin {
        let offset = offset.min(text.len());
        let line = text[..offset].matches('\n').count() + 1;
        let line_text = text.lines().nth(line - 1).unwrap_or_default().trim();
        let text = match key_of(line_text) {
            Some(k) if SECRETS.contains(&k) => format!("{k} = <hidden>"),
            _ => line_text.to_owned(),
        };
        Origin::File {
            path: path.to_owned(),
            line,
            text,
        }
    }

    /// `err`, said to come from here.
    pub(crate) fn explain(self, err: ConfigError) -> ConfigError {
        ConfigError::At {
            origin: self,
            error: Box::new(err),
        }
    }
}

/// The key a `key = value` line sets (bare or quoted), if it is one.
pub(crate) fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    bare.then_some(key)
}

/// The last key set at or before byte `offset` of a TOML text: the setting a value
/// error at `offset` belongs to (a multi-line array starts on its key's line).
pub(crate) fn key_before(text: &str, offset: usize) -> Option<&str> {
    let head = &text[..offset.min(text.len())];
    let line_start = head.rfind('\n').map_or(0, |i| i + 1);
    let this_line = text[line_start..].lines().next().unwrap_or_default();
    std::iter::once(this_line)
        .chain(head[..line_start].lines().rev())
        .find_map(|l| key_of(l.trim()))
}

/// The setting closest to an unknown name (a typo), if one is close.
pub(crate) fn closest(name: &str) -> Option<String> {
    let table = toml::Table::try_from(Config::default()).ok()?;
    table
        .keys()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A configuration being assembled from its sources.
#[derive(Debug, Default)]
pub struct Sources {
    config: Config,
    origins: HashMap<String, Origin>,
}

impl Sources {
    /// The embedded defaults.
    pub fn new() -> Sources {
        Sources::default()
    }

    /// Loads a TOML file over the defaults.
    pub fn file(&mut self, path: &Path) -> Result<&mut Sources, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let shown = path.display().to_string();
        self.config = Config::parse_toml(&text, &shown)?;
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            if let Some(k) = key_of(line.trim()) {
                self.origins
                    .insert(k.to_owned(), Origin::file_line(&shown, &text, offset));
            }
            offset += line.len();
        }
        Ok(self)
    }

    /// Applies `PUSHGATE_<FIELD>` variables (the binary's own `PUSHGATE_CONFIG`,
    /// `PUSHGATE_LOG` and `PUSHGATE_GRPC` aside).
    pub fn env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<&mut Sources, ConfigError> {
        for (var, value) in vars {
            if let Some(field) = Config::env_field(&var) {
                let origin = Origin::Env(var.clone());
                self.config
                    .set(&field, &value)
                    .map_err(|e| origin.clone().explain(e))?;
                self.origins.insert(field, origin);
            }
        }
        Ok(self)
    }

    /// Sets `field` from the flag `flag` (`--shards`, `--set shards`).
    pub fn flag(
        &mut self,
        flag: &str,
        field: &str,
        value: &str,
    ) -> Result<&mut Sources, ConfigError> {
        let origin = Origin::Flag(flag.to_owned());
        self.config
            .set(field, value)
            .map_err(|e| origin.clone().explain(e))?;
        self.origins.insert(field.to_owned(), origin);
        Ok(self)
    }

    /// Validates the result; an invalid field's error names where it was set.
    pub fn finish(&mut self) -> Result<Config, ConfigError> {
        match self.config.validate() {
            Ok(()) => Ok(std::mem::take(&mut self.config)),
            Err(ConfigError::Invalid { field, message }) => {
                let e = ConfigError::Invalid {
                    field: field.clone(),
                    message,
                };
                Err(match self.origins.get(&field) {
                    Some(o) => o.clone().explain(e),
                    None => e,
                })
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (std::path::PathBuf, Result<Config, ConfigError>) {
        let dir = std::env::temp_dir().join(format!(
            "pushgate-src-{}-{}",
            std::process::id(),
            text.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pushgate.toml");
        std::fs::write(&p, text).unwrap();
        let r = Sources::new().file(&p).and_then(|s| s.finish());
        (p, r)
    }

    #[test]
    fn a_file_error_names_the_file_line_field_and_shows_the_line() {
        let (p, r) = file("node_id = \"a\"\nshards = \"two\"\n");
        let e = r.unwrap_err().to_string();
        let want = format!(
            "{}:2: invalid shards: expected a non-negative integer, found string \"two\"\n  2 | shards = \"two\"",
            p.display()
        );
        assert_eq!(e, want);

        let (p, r) = file("# c\nshardz = 2\n");
        let e = r.unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:2: unknown setting \"shardz\" (did you mean shards?)\n  2 | shardz = 2",
                p.display()
            )
        );

        // Validation errors point at the line that set the field.
        let (p, r) = file("shards = 2\n\nheartbeat_interval_ms = 5\n");
        let e = r.unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}:3: invalid heartbeat_interval_ms: must be at least 10",
                p.display()
            )),
            "{e}"
        );
        // A multi-line array: the error belongs to its key's line.
        let (p, r) = file("allowed_origins = [\n  \"https://a\",\n  3,\n]\n");
        let e = r.unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:3: invalid allowed_origins", p.display())),
            "{e}"
        );
        // Secrets are not echoed.
        let (_, r) = file("jwt_hs256_secret = \"short-secret\"\n");
        let e = r.unwrap_err().to_string();
        assert!(e.contains("jwt_hs256_secret = <hidden>"), "{e}");
        assert!(!e.contains("short-secret"), "{e}");
        let (_, r) = file("http_token = \"two secret words\"\n");
        let e = r.unwrap_err().to_string();
        assert!(e.contains("http_token = <hidden>"), "{e}");
        assert!(!e.contains("secret words"), "{e}");
    }

    #[test]
    fn environment_and_flag_errors_name_the_variable_or_flag() {
        let e = Sources::new()
            .env([("PUSHGATE_WS_ADRR".into(), "0.0.0.0:1".into())])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "environment variable PUSHGATE_WS_ADRR: unknown setting \"ws_adrr\" (did you mean ws_addr?)"
        );
        let e = Sources::new()
            .flag("--shards", "shards", "many")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "flag --shards: invalid shards: \"many\" is not an integer"
        );
        let mut s = Sources::new();
        s.env([("PUSHGATE_HEARTBEAT_INTERVAL_MS".into(), "5".into())])
            .unwrap();
        let e = s.finish().unwrap_err().to_string();
        assert_eq!(
            e,
            "environment variable PUSHGATE_HEARTBEAT_INTERVAL_MS: invalid heartbeat_interval_ms: must be at least 10"
        );
        // The last source wins, and is the one named.
        let mut s = Sources::new();
        s.env([("PUSHGATE_HEARTBEAT_INTERVAL_MS".into(), "5".into())])
            .unwrap();
        s.flag("--set heartbeat_interval_ms", "heartbeat_interval_ms", "7")
            .unwrap();
        let e = s.finish().unwrap_err().to_string();
        assert!(e.starts_with("flag --set heartbeat_interval_ms:"), "{e}");
    }

    #[test]
    fn typos_find_their_setting() {
        assert_eq!(closest("ws_adrr").as_deref(), Some("ws_addr"));
        assert_eq!(closest("slowpolicy").as_deref(), Some("slow_policy"));
        assert_eq!(closest("completely_else"), None);
    }
}
