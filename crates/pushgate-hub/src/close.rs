//! Why a connection ended: the close code it gets and the metric label it counts under.

use pushgate_protocol::CloseCode;

/// Why a connection closed. Each reason has a close code and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The client sent a close frame.
    ClientClosed,
    /// The socket ended without a close frame, or failed.
    ConnectionLost,
    /// The client broke the WebSocket protocol.
    ProtocolError,
    /// A text frame carried invalid UTF-8.
    InvalidPayload,
    /// A frame or message exceeded the size limit.
    MessageTooBig,
    /// Nothing arrived from the client within the heartbeat timeout.
    HeartbeatTimeout,
    /// The outbound queue filled up and the policy is `disconnect`.
    SlowConsumer,
    /// An operator or publisher asked for it.
    Disconnected,
    /// The gateway is shutting down or draining.
    Shutdown,
    /// The token expired and no `refresh` arrived within the grace period.
    TokenExpired,
    /// The client sent frames or bytes faster than its inbound limits allow.
    InboundFlood,
}

impl CloseReason {
    pub const ALL: [CloseReason; 11] = [
        CloseReason::ClientClosed,
        CloseReason::ConnectionLost,
        CloseReason::ProtocolError,
        CloseReason::InvalidPayload,
        CloseReason::MessageTooBig,
        CloseReason::HeartbeatTimeout,
        CloseReason::SlowConsumer,
        CloseReason::Disconnected,
        CloseReason::Shutdown,
        CloseReason::TokenExpired,
        CloseReason::InboundFlood,
    ];

    /// The close code sent to the client.
    pub fn code(self) -> CloseCode {
        match self {
            CloseReason::ClientClosed | CloseReason::ConnectionLost => CloseCode::NORMAL,
            CloseReason::ProtocolError => CloseCode::PROTOCOL_ERROR,
            CloseReason::InvalidPayload => CloseCode::INVALID_PAYLOAD,
            CloseReason::MessageTooBig => CloseCode::MESSAGE_TOO_BIG,
            CloseReason::HeartbeatTimeout => CloseCode::HEARTBEAT_TIMEOUT,
            CloseReason::SlowConsumer => CloseCode::SLOW_CONSUMER,
            CloseReason::Disconnected => CloseCode::DISCONNECTED,
            CloseReason::Shutdown => CloseCode::GOING_AWAY,
            CloseReason::TokenExpired => CloseCode::TOKEN_EXPIRED,
            CloseReason::InboundFlood => CloseCode::POLICY_VIOLATION,
        }
    }

    /// The `reason` label of `pushgate_connections_closed_total`.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::ConnectionLost => "connection_lost",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::InvalidPayload => "invalid_payload",
            CloseReason::MessageTooBig => "message_too_big",
            CloseReason::HeartbeatTimeout => "heartbeat_timeout",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Disconnected => "disconnected",
            CloseReason::Shutdown => "shutdown",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::InboundFlood => "inbound_flood",
        }
    }

    /// Whether queued frames are dropped rather than flushed before the close frame:
    /// a slow or silent client will not read them anyway, and a flooding one has used
    /// up its share.
    pub fn is_abortive(self) -> bool {
        matches!(
            self,
            CloseReason::SlowConsumer | CloseReason::HeartbeatTimeout | CloseReason::InboundFlood
        )
    }

    pub(crate) fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .expect("listed in ALL")
    }
}
