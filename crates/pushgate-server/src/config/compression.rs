//! permessage-deflate: `compression`, `compression_level`, `compression_min_bytes`
//! (docs/protocol.md, "Compression").

use super::error::invalid;
use super::{Config, ConfigError};

impl Config {
    /// The hub's form: how publications are compressed, once each.
    pub(super) fn compression(&self) -> pushgate_hub::CompressionConfig {
        pushgate_hub::CompressionConfig {
            level: self.compression_level,
            min_bytes: self.compression_min_bytes,
        }
    }

    /// The zlib level, and a threshold under which something could still be compressed.
    pub(super) fn validate_compression(&self) -> Result<(), ConfigError> {
        if !(1..=9).contains(&self.compression_level) {
            return Err(invalid("compression_level", "1 (fastest) to 9 (smallest)"));
        }
        if self.compression_min_bytes > self.max_payload_bytes {
            return Err(invalid(
                "compression_min_bytes",
                "at most max_payload_bytes (nothing would ever be compressed)",
            ));
        }
        Ok(())
    }
}
