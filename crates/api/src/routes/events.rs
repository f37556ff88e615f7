//! `/v1/sessions/{id}/events`: send (parse, validate, inbox, append, wake), list, and the
//! SSE stream (`crate::sse`).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use agentd_catalog::EventFilter;
use agentd_session::inbox;
use agentd_wire::event::SendEvents;
use agentd_wire::{Event, Page};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query};
use crate::routes::page;
use crate::user_events::{file_rubrics, user_events, validate_events};

/// The SDK's session tool runner lists with `limit=1000`.
const MAX_EVENTS_PAGE: usize = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions/{id}/events", post(send).get(list))
        .route("/v1/sessions/{id}/events/stream", get(stream))
}

/// The send body before each event is parsed on its own, so errors name the full path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSend {
    events: Vec<Value>,
}

#[derive(Serialize)]
struct Sent {
    data: Vec<Event>,
}

async fn send(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Extension(principal): Extension<crate::auth::Principal>,
    Path(id): Path<String>,
    Body(req): Body<RawSend>,
) -> ApiResult<Json<Sent>> {
    let req = SendEvents {
        events: user_events(req.events, "events")?,
    };
    let session = st.store.get_session(&ws.id, &id).await?;
    if session.archived_at.is_some() {
        return Err(ApiError::conflict(format!(
            "session {id} is archived and accepts no more events"
        )));
    }
    if req.events.is_empty() {
        return Err(ApiError::invalid("events: send at least one event"));
    }
    // Events naming a thread go to that thread's log; so does an answer to a worker's call
    // shown on the session's log, whether or not it names the thread.
    let mut req = req;
    for e in &mut req.events {
        let origin = match inbox::unaddressed_call(&id, e) {
            Some(call) => copied_from(&st, &id, call).await?,
            None => None,
        };
        inbox::address(&id, e, origin.as_deref());
    }
    let mut logs = Vec::with_capacity(req.events.len());
    for (i, e) in req.events.iter().enumerate() {
        logs.push(match e.thread() {
            None => id.clone(),
            Some(t) => match st.store.thread_log(&ws.id, &id, t).await {
                Ok(log) => log,
                Err(agentd_catalog::Error::NotFound(m)) => {
                    return Err(ApiError::invalid(format!(
                        "events[{i}].session_thread_id: {m} in session {id}"
                    )));
                }
                Err(e) => return Err(e.into()),
            },
        });
    }
    validate_events(&st, Some(&logs), &req.events, "events").await?;
    crate::worker_results::check(&st, &principal, &id, &req.events).await?;
    let events = file_rubrics(&st, &ws.id, req.events, "events").await?;
    let threads: Vec<inbox::Thread> = st
        .store
        .child_threads(&id)
        .await?
        .into_iter()
        .map(|t| inbox::Thread {
            id: t.id,
            agent_name: t.agent_name,
            status: t.status,
            archived: t.archived,
        })
        .collect();
    let addressed = events
        .into_iter()
        .zip(logs)
        .map(|((event, private), log_id)| inbox::Addressed {
            event,
            private,
            log_id,
        })
        .collect();
    let mut data = Vec::new();
    for run in inbox::runs(addressed) {
        let (d, stored) = append_run(&st, &id, run, &threads).await?;
        data.extend(stored.into_iter().take(d.sent).map(|e| e.event));
        for w in d.wake {
            match w {
                inbox::Wake::Notify(log) => st.runner.notify(&log),
                inbox::Wake::Interrupt(log) => st.runner.interrupt(&log),
            }
        }
    }
    Ok(Json(Sent { data }))
}

/// Append one run of events bound for the same log, with the answers that close what it
/// ends for a self-hosted session's worker (`worker_calls::closed_by`). A worker's own answer
/// may land first: the append is then refused as a second answer, and is made again.
async fn append_run(
    st: &AppState,
    sid: &str,
    run: Vec<inbox::Addressed>,
    threads: &[inbox::Thread],
) -> ApiResult<(inbox::Delivery, Vec<agentd_session::StoredEvent>)> {
    let mut attempts = 0;
    loop {
        let closes = crate::worker_calls::closed_by(st, sid, &run).await?;
        let mut d = inbox::deliver(sid, run.clone(), threads)
            .pop()
            .expect("one run is one delivery");
        let guard = std::mem::replace(&mut d.guard, Box::new(|_| Ok(Vec::new())));
        let retry = !closes.is_empty() && attempts < 3;
        let guard: agentd_session::Guard = Box::new(move |head| {
            let mut batch = guard(head)?;
            batch.extend(closes);
            Ok(batch)
        });
        match st.store.append(&d.log_id, guard).await {
            Ok((_, stored)) => return Ok((d, stored)),
            Err(agentd_session::Error::Refused(agentd_session::Refusal::Invalid(m)))
                if retry && m.contains("already answered") =>
            {
                attempts += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The worker thread whose event `event_id` on session `sid`'s log is a copy of, if it is one.
async fn copied_from(st: &AppState, sid: &str, event_id: &str) -> ApiResult<Option<String>> {
    let Some(seq) = st.store.event_position(sid, event_id).await? else {
        return Ok(None);
    };
    let found = st.store.read(sid, seq - 1, 1).await?;
    Ok(found
        .first()
        .and_then(|e| e.event.body.copied_from().map(str::to_owned)))
}

async fn list(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Json<Page<Event>>> {
    list_log(&st, &ws.id, &id, &id, &q).await
}

/// A page of the events of `log_id`, a log of session `id`.
pub async fn list_log(
    st: &AppState,
    ws: &str,
    id: &str,
    log_id: &str,
    q: &Query,
) -> ApiResult<Json<Page<Event>>> {
    let order = match q.get("order") {
        None => agentd_catalog::Order::Asc,
        Some(_) => q.order()?,
    };
    let f = EventFilter {
        order,
        limit: q.limit_up_to(MAX_EVENTS_PAGE)?,
        page: q.page(),
        types: q.all("types"),
        created_at_gt: q.time("created_at[gt]")?,
        created_at_gte: q.time("created_at[gte]")?,
        created_at_lt: q.time("created_at[lt]")?,
        created_at_lte: q.time("created_at[lte]")?,
    };
    Ok(Json(page(
        st.store.list_log_events(ws, id, log_id, f).await?,
        |e| e.event,
    )))
}

async fn stream(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Extension(key): Extension<crate::KeyId>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Query,
) -> ApiResult<axum::response::Response> {
    st.store.get_session(&ws.id, &id).await?;
    crate::sse::stream_log(st, id, key, headers, q).await
}
