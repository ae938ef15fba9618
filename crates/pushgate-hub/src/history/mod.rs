//! Channel history: for channels under a `[[history]]` rule, every publication gets an
//! offset and is kept for a while, so that a client that reconnects can resume from
//! its last position and get exactly what it missed.
//!
//! - [`rules`]: which channels keep history, how many publications and how long.
//! - [`stream`]: one channel's stream, and why recovery is exact (the per-shard
//!   offsets).
//! - [`store`]: the node's streams under a memory bound, eviction and expiry.
//! - [`recovery`]: a subscribe that resumes from positions, done under the shard's lock.
//! - [`cluster`]: positions learnt from a cluster broker (Redis assigns offsets).
//!
//! docs/history.md describes the model and its guarantees.

mod cluster;
pub(crate) mod recovery;
mod rules;
mod store;
mod stream;

pub use cluster::{At, Snapshot, SnapshotEntry, Synced};
pub(crate) use recovery::Waiting;
pub use recovery::{ReplyFn, SubscribeRequest, Subscribed, AHEAD_WAIT, MAX_BACKLOG_BYTES};
pub use rules::{pattern_is_valid, pattern_matches, HistoryRule, RuleError, Rules};
pub use store::{History, HistoryPage, MAX_READ};
pub(crate) use stream::Stream;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
pub(crate) mod tests;
