//! The outcome of a publication.

use pushgate_hub::PublishReport;
use pushgate_protocol::Position;

/// The outcome of a publication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// What this node enqueued and skipped. With Redis, publications that every node
    /// delivers from the bus (history channels, publications with an idempotency key)
    /// are not counted here: this node delivers them asynchronously, as the others do.
    pub local: PublishReport,
    /// Nodes that took the publication for delivery (this one included when it has a
    /// target here). With several channels or users, the largest count among them.
    pub nodes: u32,
    /// The position of the publication in each of its history channels.
    pub positions: Vec<(String, Position)>,
    /// A retry with an idempotency key seen within the window: not published again;
    /// `nodes` and `positions` are those of the first attempt.
    pub duplicate: bool,
}

/// What is known of a publication once it is accepted, before this node's shards have
/// enqueued it ([`crate::Pending::accepted`]): no connection counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// As [`Delivery::nodes`].
    pub nodes: u32,
    /// As [`Delivery::positions`].
    pub positions: Vec<(String, Position)>,
    /// As [`Delivery::duplicate`].
    pub duplicate: bool,
}

impl From<Delivery> for Accepted {
    fn from(d: Delivery) -> Accepted {
        Accepted {
            nodes: d.nodes,
            positions: d.positions,
            duplicate: d.duplicate,
        }
    }
}
