//! A position in a channel's history: which life of the stream (`epoch`) and the
//! offset of a publication in it.

use serde::{Deserialize, Serialize};

/// Where a client is in a history channel. Offsets grow by one per publication; the
/// epoch changes whenever the stream's history was lost, which makes every older
/// position unrecoverable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: String,
    pub offset: u64,
}

/// First byte of a binary publication that carries an offset. Channel names are at
/// most 128 bytes, so it is never the length byte of a plain binary publication.
pub const POSITIONED_BINARY: u8 = 0xFF;
