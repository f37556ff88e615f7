//! The error body every non-2xx response carries: `{"type":"error","error":{"type","message"}}`.

use serde::{Deserialize, Serialize};

/// The `error.type` values and the HTTP status each maps to; the SDK picks its exception
/// class from the status, so the two must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    InvalidRequestError,
    AuthenticationError,
    PermissionError,
    NotFoundError,
    ConflictError,
    RequestTooLarge,
    RateLimitError,
    ApiError,
    OverloadedError,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequestError => 400,
            ErrorKind::AuthenticationError => 401,
            ErrorKind::PermissionError => 403,
            ErrorKind::NotFoundError => 404,
            ErrorKind::ConflictError => 409,
            ErrorKind::RequestTooLarge => 413,
            ErrorKind::RateLimitError => 429,
            ErrorKind::ApiError => 500,
            ErrorKind::OverloadedError => 529,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: ErrorTag,
    pub error: ErrorDetail,
}

/// The constant outer `"type": "error"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorTag {
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: ErrorKind,
    pub message: String,
}

impl ErrorBody {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ErrorBody {
            kind: ErrorTag::Error,
            error: ErrorDetail {
                kind,
                message: message.into(),
            },
        }
    }
}
