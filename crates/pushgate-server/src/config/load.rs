//! Reading a configuration: a TOML text (an error names the line), `PUSHGATE_<FIELD>`
//! variables, and one field set from its text form (flags and variables).

use std::path::Path;

use super::error::{humane, invalid, unknown};
use super::{Config, ConfigError};
use crate::config_source::Origin;

impl Config {
    /// Loads a TOML file (fields not given keep their defaults); not validated.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::parse_toml(text, "(toml)")
    }

    /// Parses `text`, read from `path`; an error names the line, its setting and its text.
    pub(crate) fn parse_toml(text: &str, path: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let message = e.message();
            let unknown_field = message
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next());
            let span = e.span();
            let key = span
                .as_ref()
                .and_then(|s| crate::config_source::key_before(text, s.start));
            let error = match (unknown_field, key) {
                (Some(f), _) => unknown(f),
                (None, Some(k)) => invalid(k, humane(message)),
                (None, None) => ConfigError::Syntax(message.to_owned()),
            };
            match span {
                Some(s) => Origin::file_line(path, text, s.start).explain(error),
                None => ConfigError::Syntax(format!("{path}: {error}")),
            }
        })
    }

    /// The setting a `PUSHGATE_<FIELD>` variable names; `None` for other variables
    /// and for the binary's own (config file, log filter, `publish` target).
    pub(crate) fn env_field(var: &str) -> Option<String> {
        let field = var.strip_prefix("PUSHGATE_")?;
        (!matches!(field, "CONFIG" | "LOG" | "GRPC")).then(|| field.to_ascii_lowercase())
    }

    /// Applies `PUSHGATE_<FIELD>` variables from `vars` (e.g. `PUSHGATE_WS_ADDR`).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (var, value) in vars {
            if let Some(field) = Self::env_field(&var) {
                self.set(&field, &value)
                    .map_err(|e| Origin::Env(var).explain(e))?;
            }
        }
        Ok(())
    }

    /// Sets one field from its text form, as a flag or environment variable gives it.
    /// A list field takes comma-separated items (`a,b`; empty: the empty list).
    pub fn set(&mut self, field: &str, value: &str) -> Result<(), ConfigError> {
        let mut table = toml::Table::try_from(&*self).expect("the config always serializes");
        let Some(current) = table.get(field) else {
            return Err(unknown(field));
        };
        let parsed = match current {
            toml::Value::String(_) => toml::Value::String(value.to_owned()),
            toml::Value::Integer(_) => toml::Value::Integer(
                value
                    .parse()
                    .map_err(|_| invalid(field, format!("{value:?} is not an integer")))?,
            ),
            toml::Value::Boolean(_) => toml::Value::Boolean(
                value
                    .parse()
                    .map_err(|_| invalid(field, format!("{value:?} is not true or false")))?,
            ),
            toml::Value::Array(_) => toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(|v| toml::Value::String(v.to_owned()))
                    .collect(),
            ),
            _ => toml::Value::String(value.to_owned()),
        };
        table.insert(field.to_owned(), parsed);
        *self = table
            .try_into()
            .map_err(|e: toml::de::Error| invalid(field, humane(e.message())))?;
        Ok(())
    }
}
