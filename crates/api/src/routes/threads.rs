//! `/v1/sessions/{id}/threads`: a session's primary thread and the threads its coordinator
//! started: list, retrieve, archive, and each thread's events and stream.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use agentd_wire::ids::Kind;
use agentd_wire::thread::SessionThread;
use agentd_wire::{Event, Page, SessionStatus};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::routes::events::list_log;
use crate::routes::page;
use crate::sse::stream_log;

/// Threads per page when the client names no limit (the SDK documents 1000).
const MAX_THREADS_PAGE: usize = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions/{id}/threads", get(list))
        .route("/v1/sessions/{id}/threads/{tid}", get(retrieve))
        .route("/v1/sessions/{id}/threads/{tid}/archive", post(archive))
        .route("/v1/sessions/{id}/threads/{tid}/events", get(events))
        .route("/v1/sessions/{id}/threads/{tid}/stream", get(stream))
}

async fn list(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Json<Page<SessionThread>>> {
    let mut statuses = Vec::new();
    for s in q.all("statuses") {
        statuses.push(SessionStatus::parse(&s).ok_or_else(|| {
            ApiError::invalid(format!(
                "statuses: {s:?} is not one of rescheduling, running, idle, terminated"
            ))
        })?);
    }
    let limit = match q.get("limit") {
        None => MAX_THREADS_PAGE,
        Some(_) => q.limit_up_to(MAX_THREADS_PAGE)?,
    };
    let p = st
        .store
        .list_threads(&ws.id, &id, statuses, limit, q.id_page(Kind::Thread)?)
        .await?;
    Ok(Json(page(p, |t| t)))
}

async fn retrieve(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path((id, tid)): Path<(String, String)>,
) -> ApiResult<Json<SessionThread>> {
    Ok(Json(st.store.get_thread(&ws.id, &id, &tid).await?))
}

async fn archive(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path((id, tid)): Path<(String, String)>,
) -> ApiResult<Json<SessionThread>> {
    Ok(Json(st.store.archive_thread(&ws.id, &id, &tid).await?))
}

async fn events(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path((id, tid)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Json<Page<Event>>> {
    let log = st.store.thread_log(&ws.id, &id, &tid).await?;
    list_log(&st, &ws.id, &id, &log, &q).await
}

async fn stream(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Extension(key): Extension<crate::KeyId>,
    Path((id, tid)): Path<(String, String)>,
    headers: HeaderMap,
    q: Query,
) -> ApiResult<axum::response::Response> {
    let log = st.store.thread_log(&ws.id, &id, &tid).await?;
    stream_log(st, log, key, headers, q).await
}
