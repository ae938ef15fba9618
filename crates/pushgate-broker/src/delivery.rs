//! The outcome of a publication.

use pushgate_hub::PublishReport;
use pushgate_protocol::Position;

/// The outcome of a publication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// What this node enqueued and skipped.
    pub local: PublishReport,
    /// Nodes that took the publication for delivery (this one included when it has a
    /// target here). With several channels or users, the largest count among them.
    pub nodes: u32,
    /// The publication's position in each of its history channels.
    pub positions: Vec<(String, Position)>,
}
