//! Close codes pushgate sends, one per reason a connection ends.
//!
//! Standard codes come from RFC 6455 §7.4.1; the 4000-4999 range is private to
//! pushgate and documented in `docs/protocol.md`.

/// A WebSocket close status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// Normal closure (the client asked to close).
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// The server is going away (shutdown or drain); reconnect elsewhere.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// The client broke the WebSocket protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// A text frame carried invalid UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// The client broke a policy: it sent messages faster than the configured rate.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// A frame or message exceeded the configured size limit.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// No frame (data or pong) arrived within the heartbeat timeout.
    pub const HEARTBEAT_TIMEOUT: CloseCode = CloseCode(4001);
    /// An operator or publisher disconnected this connection.
    pub const DISCONNECTED: CloseCode = CloseCode(4002);
    /// The connection's token expired and no fresh one arrived within the grace period.
    pub const TOKEN_EXPIRED: CloseCode = CloseCode(4003);
    /// The client did not read fast enough: its outbound queue filled up.
    pub const SLOW_CONSUMER: CloseCode = CloseCode(4008);

    /// Whether a client may send this code in a close frame (RFC 6455 §7.4).
    pub fn is_valid_from_peer(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}
