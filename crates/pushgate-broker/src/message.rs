//! What a publisher hands the broker: a [`Message`] for a cluster-wide [`Target`].

use pushgate_protocol::Payload;

use crate::wire::NodeConn;

/// Who a publication is for, cluster-wide: the hub's target whose connection ids name
/// their node.
pub type Target = pushgate_hub::Target<NodeConn>;

/// One publication, as a publisher states it.
#[derive(Debug, Clone)]
pub struct Message {
    pub target: Target,
    pub payload: Payload,
    /// A connection that must not receive it.
    pub exclude: Option<NodeConn>,
    /// An idempotency key: a publication with a key seen within the window is not
    /// published again; the retry is answered with the first attempt's outcome.
    pub idempotency_key: Option<String>,
}
