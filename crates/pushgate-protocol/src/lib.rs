//! pushgate's wire types, shared by every other crate and free of I/O and runtimes.
//!
//! - [`frame`]: RFC 6455 frame encoding (server frames are unmasked, so one encoded
//!   frame serves every recipient) and the incremental [`FrameReader`] for client frames.
//! - [`close`]: the close codes pushgate sends and why.
//! - [`channel`]: channel-name validation.
//! - [`user`]: user-id validation.
//! - [`command`]: the JSON commands a client sends and the replies it gets.
//! - [`envelope`]: how a publication is framed for a client.
//! - [`position`]: positions in a channel's history (epoch and offset).
//! - [`presence`]: who is subscribed to a channel, and `join` / `leave` events.
//! - [`conn_id`]: connection ids, unique across nodes.
//! - [`deflate`]: permessage-deflate payloads (RFC 7692), without context takeover.
//! - [`sse`]: Server-Sent Events: events, their ids, and events from WebSocket frames.
//!
//! The client protocol is described in `docs/protocol.md`.

pub mod channel;
pub mod close;
pub mod command;
pub mod conn_id;
pub mod deflate;
pub mod envelope;
pub mod frame;
pub mod position;
pub mod presence;
pub mod sse;
pub mod user;

pub use channel::{validate_channel, ChannelError, MAX_CHANNEL_LEN};
pub use close::CloseCode;
pub use command::{Command, CommandError, Reply};
pub use conn_id::ConnId;
pub use envelope::{decode_publication, encode_positioned, encode_publication, Payload};
pub use frame::{encode_frame, FrameReader, Message, OpCode, ProtocolError};
pub use position::Position;
pub use presence::{PresenceClient, PresenceEvent};
pub use user::{validate_user, UserError, MAX_USER_LEN};

/// The WebSocket subprotocol name of this protocol version.
pub const SUBPROTOCOL: &str = "pushgate.v1";
/// The protocol version announced in the `connected` message.
pub const PROTOCOL_VERSION: u32 = 1;
