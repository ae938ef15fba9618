//! A second protocol on the WebSocket listener (the Pusher protocol, served by
//! `pushgate-pusher`): the edge accepts its upgrades, registers its connections with
//! the shard as the hub's dialect (`Shard::register_dialect`) and runs them with the
//! same task, reader, writer, limits, heartbeats and drain as pushgate.v1; only what
//! the client says and the first and last frames are the surface's.

use bytes::Bytes;
use pushgate_hub::{CloseReason, ConnHandle};
use pushgate_protocol::ConnId;

use crate::handshake::UpgradeRequest;

/// Why a pushgate.v1 subscribe of a guarded channel is refused.
pub(crate) fn guarded_message(channel: &str) -> String {
    format!("channel {channel:?} is guarded by the Pusher surface: follow it with a token that allows it")
}

/// The protocol's side of its connections.
pub trait Surface: Send + Sync + 'static {
    /// Whether upgrade requests for `path` are this surface's (checked before the
    /// pushgate.v1 path).
    fn serves(&self, path: &str) -> bool;

    /// An upgrade request for a served path, which will be connection `conn`:
    /// `Ok(first frame)` to accept it, or `Err(frames)` (ending with a close frame)
    /// sent after the upgrade to refuse it, as the protocol does. After an `Ok`,
    /// [`Surface::closed`] is called exactly once.
    fn open(&self, req: &UpgradeRequest, conn: ConnId) -> Result<Bytes, Bytes>;

    /// The frames (ending with a close frame) for a client refused because the node
    /// is at `max_connections`.
    fn over_capacity(&self) -> Bytes;

    /// A text message from an open connection (on its shard's thread: must not block).
    fn on_text(&self, text: &str, handle: &ConnHandle);

    /// How the server closes one of its connections for `reason` (with an operator's
    /// code and text for a disconnect, when given): a last message, if any, then the
    /// close frame.
    fn closing(&self, reason: CloseReason, note: Option<(u16, &str)>) -> Vec<Bytes>;

    /// The connection is gone (or was never registered after an `open`).
    fn closed(&self, conn: ConnId);

    /// Whether `channel` is one of the protocol's guarded channels (Pusher's private,
    /// encrypted, presence and user channels, mapped): a pushgate.v1 connection or SSE
    /// stream follows it only with a token grant that allows it, never anonymously.
    fn guarded(&self, channel: &str) -> bool;
}
