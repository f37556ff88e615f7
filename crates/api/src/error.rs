//! Every domain error becomes one HTTP status and Anthropic's error body, here and only here.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use agentd_wire::{ErrorBody, ErrorKind};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// A 503 with `Retry-After` instead of the kind's status: storage is briefly unavailable.
    pub unavailable: bool,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            unavailable: false,
        }
    }

    /// Nothing was done and the client should try again shortly (the SDKs retry a 503 and
    /// honour `Retry-After`).
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            unavailable: true,
            ..Self::new(ErrorKind::ApiError, message)
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
        let body = Json(ErrorBody::new(self.kind, self.message));
        if self.unavailable {
            let retry = [(axum::http::header::RETRY_AFTER, "2")];
            return (StatusCode::SERVICE_UNAVAILABLE, retry, body).into_response();
        }
        let status =
            StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, body).into_response()
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
            E::Unavailable(m) | E::Log(L::Unavailable(m)) => {
                tracing::warn!(error = %m, "storage unavailable");
                ApiError::unavailable(
                    "the database is unavailable; nothing was changed, retry shortly",
                )
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_storage_is_a_503_the_client_may_retry() {
        let lost = agentd_session::Error::Unavailable("connection refused".into());
        let r = ApiError::from(lost).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["retry-after"], "2");
        let broken = agentd_catalog::Error::Storage("corrupt".into());
        assert_eq!(
            ApiError::from(broken).into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
