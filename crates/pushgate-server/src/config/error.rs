//! [`ConfigError`], and serde's messages as an operator reads them.

use thiserror::Error;

use crate::config_source::Origin;

/// A configuration that cannot be used; the message names the field and, once
/// [`Sources`](crate::Sources) knows it, where its value came from.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The text is not TOML (the message is the parser's).
    #[error("{0}")]
    Syntax(String),
    /// No setting has this name.
    #[error("unknown setting {field:?}{}", hint.as_ref().map(|h| format!(" (did you mean {h}?)")).unwrap_or_default())]
    Unknown { field: String, hint: Option<String> },
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// Another error, with the file line, variable or flag that caused it.
    #[error("{}", at(origin, error))]
    At {
        origin: Origin,
        error: Box<ConfigError>,
    },
}

fn at(origin: &Origin, error: &ConfigError) -> String {
    match origin {
        Origin::File { line, text, .. } => format!("{origin}: {error}\n  {line} | {text}"),
        _ => format!("{origin}: {error}"),
    }
}

pub(super) fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

pub(super) fn unknown(field: &str) -> ConfigError {
    ConfigError::Unknown {
        field: field.to_owned(),
        hint: crate::config_source::closest(field),
    }
}

/// serde's "invalid type: string \"two\", expected usize" as an operator reads it.
pub(super) fn humane(message: &str) -> String {
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "));
    let Some((found, expected)) = rest.and_then(|r| r.rsplit_once(", expected ")) else {
        return message.to_owned();
    };
    let expected = match expected {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a non-negative integer",
        "isize" | "i64" | "i32" => "an integer",
        e => e,
    };
    format!("expected {expected}, found {found}")
}
