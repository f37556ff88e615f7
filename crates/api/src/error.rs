//! Every domain error becomes one HTTP status and Anthropic's error body, here and only here.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use agentd_wire::{ErrorBody, ErrorKind};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequestError, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFoundError, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ConflictError, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody::new(self.kind, self.message))).into_response()
    }
}

impl From<agentd_catalog::Error> for ApiError {
    fn from(e: agentd_catalog::Error) -> Self {
        use agentd_catalog::Error as E;
        use agentd_session::{Error as L, Refusal};
        match e {
            E::NotFound(m) => ApiError::not_found(m),
            E::Conflict(m) => ApiError::conflict(m),
            E::Invalid(m) => ApiError::invalid(m),
            E::Log(L::NotFound(id)) => ApiError::not_found(format!("session {id} not found")),
            E::Log(L::Refused(Refusal::Terminated)) => {
                ApiError::conflict("the session is terminated and accepts no more events")
            }
            E::Log(L::Refused(r)) => ApiError::conflict(r.to_string()),
            E::Storage(m) | E::Log(L::Storage(m)) => {
                tracing::error!(error = %m, "storage failure");
                ApiError::new(
                    ErrorKind::ApiError,
                    "internal storage error; see the server log",
                )
            }
        }
    }
}

impl From<agentd_session::Error> for ApiError {
    fn from(e: agentd_session::Error) -> Self {
        agentd_catalog::Error::Log(e).into()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
