//! The `presence` command: who is subscribed to a channel, for a connection that is
//! itself subscribed to it. The read may cross the cluster (Redis), so it runs in a
//! task of its own on the shard's runtime and the reply is queued when it completes;
//! other commands of the connection are not held meanwhile.

use pushgate_hub::{ConnHandle, PresenceError};
use pushgate_protocol::command::Reply;
use pushgate_protocol::presence::presence_json;
use pushgate_protocol::{encode_frame, OpCode};
use serde_json::Value;

use crate::EdgeShared;

/// Answers `{"type":"presence","channel":C}`: a `presence` reply, or an error
/// (`bad_request` without a rule for C, `forbidden` for a connection not subscribed
/// to C, `unavailable` when the cluster cannot be read).
pub(crate) fn on_presence(
    channel: String,
    id: Option<Value>,
    handle: &ConnHandle,
    edge: &EdgeShared,
) {
    let hub = edge.hub.clone();
    let error = |code: &'static str, message: String| {
        Reply::Error {
            code,
            message,
            id: id.as_ref(),
        }
        .to_frame()
    };
    let Some(presence) = hub.presence().filter(|p| p.applies(&channel)).cloned() else {
        let e = PresenceError::NoRule(channel);
        return handle.send(error("bad_request", e.to_string()));
    };
    let conn = handle.id();
    if !presence.is_member(&channel, conn) {
        return handle.send(error(
            "forbidden",
            format!("presence of {channel:?} is for its subscribers: subscribe first"),
        ));
    }
    tokio::spawn(async move {
        let node = hub.config().node_id.clone();
        let frame = match presence.read(&channel, &node).await {
            Ok(clients) => {
                let json = presence_json(&channel, &clients, Some(id.as_ref()));
                encode_frame(OpCode::Text, json.as_bytes())
            }
            Err(e) => Reply::Error {
                code: "unavailable",
                message: e.to_string(),
                id: id.as_ref(),
            }
            .to_frame(),
        };
        hub.send_to(conn, frame);
    });
}
