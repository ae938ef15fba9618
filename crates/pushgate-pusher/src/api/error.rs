//! Every refusal of the HTTP API, with Pusher's status: 400 bad request, 401 bad
//! signature, 404 unknown app or route, 413 too large, 429/503 when the gateway cannot
//! take it now. The body is one line of plain text, as Pusher answers (the server SDKs
//! put it in their exception's message).

use hyper::StatusCode;

use super::backend::BackendError;
use super::signature::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Unknown app {0:?}")]
    UnknownApp(String),
    #[error("Not found")]
    NoRoute,
    #[error("Method not allowed")]
    Method,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("Invalid JSON body: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("Event data is {size} bytes; the limit is {max}")]
    DataTooLarge { size: usize, max: usize },
    #[error("Request body over {0} bytes")]
    BodyTooLarge(usize),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// What is wrong with a well-formed request: Pusher answers 400 to each.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Invalid {
    #[error("Missing event name")]
    NoName,
    #[error("Event name is over {0} characters")]
    NameTooLong(usize),
    #[error("Missing data")]
    NoData,
    #[error("data must be a string (JSON-encode objects first)")]
    DataNotString,
    #[error("Missing channels: give \"channels\" (a list) or \"channel\"")]
    NoChannels,
    #[error("Give \"channels\" or \"channel\", not both")]
    BothChannelFields,
    #[error("Cannot trigger on more than {0} channels at once")]
    TooManyChannels(usize),
    #[error("Invalid channel name {0:?}")]
    ChannelName(String),
    #[error("Cannot trigger on several channels when one is encrypted (private-encrypted-)")]
    EncryptedWithOthers,
    #[error("Invalid socket_id {0:?}")]
    SocketId(String),
    #[error("Unknown info attribute {0:?}")]
    InfoAttribute(String),
    #[error("user_count is only available for presence- channels")]
    UserCountNotPresence,
    #[error("Batch is empty")]
    EmptyBatch,
    #[error("Cannot batch more than {0} events at once")]
    BatchTooLarge(usize),
    #[error("Channel {0:?} is not a presence channel")]
    NotPresence(String),
    #[error("Invalid user id {0:?}")]
    UserId(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownApp(_) | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::Method => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Auth(_) => StatusCode::UNAUTHORIZED,
            ApiError::Json(_) | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::DataTooLarge { .. } | ApiError::BodyTooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::Backend(e) => e.status(),
        }
    }

    /// The label of `pushgate_pusher_api_refusals_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::UnknownApp(_) => "unknown_app",
            ApiError::NoRoute | ApiError::Method => "route",
            ApiError::Auth(AuthError::Expired { .. }) => "timestamp",
            ApiError::Auth(AuthError::BodyMd5 { .. }) => "body_md5",
            ApiError::Auth(AuthError::Signature { .. }) => "signature",
            ApiError::Auth(_) => "auth",
            ApiError::Json(_) | ApiError::Invalid(_) => "invalid",
            ApiError::DataTooLarge { .. } | ApiError::BodyTooLarge(_) => "too_large",
            // A count the gateway refuses as too wide (400) is the caller's to narrow.
            ApiError::Backend(e) if e.status() == StatusCode::BAD_REQUEST => "invalid",
            ApiError::Backend(_) => "unavailable",
        }
    }
}
