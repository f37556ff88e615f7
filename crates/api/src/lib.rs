//! The HTTP API: the Managed Agents routes, wire-compatible with the official SDKs.
//!
//! Owns: routing, authentication and per-key rate limits, request parsing with errors that
//! name the field, the mapping from domain errors to Anthropic's error shape, and the SSE
//! event stream fed from the session log. Must not touch: SQL or any one backend (it holds an
//! `Arc<dyn agentd_catalog::Storage>`), model wire formats, session policy: what a client's events do (which log, what is appended
//! with them, what wakes) is `agentd_session::inbox`'s to decide; a handler parses,
//! validates, asks the inbox, appends, wakes and serialises.

mod auth;
mod error;
mod extract;
mod failures;
mod limits;
mod routes;
mod sse;
mod state;
mod streams;
#[cfg(test)]
mod tests;
mod user_events;
mod work_leases;
mod worker_calls;
mod worker_results;

pub use auth::RateLimit;
pub use error::ApiError;
pub use routes::work::WorkSettings;
pub use state::AppState;
pub use streams::{DEFAULT_STREAMS_PER_KEY, KeyId};
pub use work_leases::run as run_work_leases;

use axum::Router;

/// Largest request body accepted; a bigger one is refused with 413.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(routes::agents::routes())
        .merge(routes::environments::routes())
        .merge(routes::sessions::routes())
        .merge(routes::resources::routes())
        .merge(routes::events::routes())
        .merge(routes::threads::routes())
        .merge(routes::files::routes())
        .merge(routes::work::routes())
        .merge(routes::vaults::routes())
        .merge(routes::credentials::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(read_small_bodies))
        .with_state(state);
    Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(method_not_allowed)
}

/// Bodies this small are read before anything may refuse the request.
const EARLY_READ: u64 = 64 * 1024;

/// Read a small request body whole before authentication runs. A refusal sent before the body
/// was read leaves hyper unable to reuse the connection, so it closes it after the response;
/// a client that had already sent its next request on that kept-alive connection then saw it
/// fail with no response at all (seen in CI: a 401 to a POST, then a lost GET). Handlers read
/// such bodies whole anyway; larger ones (file uploads) are still streamed.
async fn read_small_bodies(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let small = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > 0 && n <= EARLY_READ);
    if !small {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, EARLY_READ as usize).await {
        Ok(bytes) => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
        Err(e) => ApiError::invalid(format!("cannot read the request body: {e}")).into_response(),
    }
}

async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = agentd_wire::ErrorBody::new(
        agentd_wire::ErrorKind::InvalidRequestError,
        format!("{method} is not supported on {}", uri.path()),
    );
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}
