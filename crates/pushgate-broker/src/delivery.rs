//! The outcome of a publication.

use pushgate_hub::PublishReport;

/// The outcome of a publication.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// What this node enqueued and skipped.
    pub local: PublishReport,
    /// Nodes that took the publication for delivery (this one included when it has a
    /// target here). With several channels or users, the largest count among them.
    pub nodes: u32,
}
