//! `/v1/sessions/{id}/events`: send, list, and the SSE stream fed from the log.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use agentd_brain::Published;
use agentd_session::inbox;
use agentd_session::{Private, SessionLog, StoredEvent};
use agentd_store::EventFilter;
use agentd_wire::event::{Preview, SendEvents, UserEvent};
use agentd_wire::{Event, EventBody, Page};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query, parse_at};
use crate::routes::page;

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

/// Parse client events one by one: serde's tagged enums would report an error inside an event
/// at the event, not at the field.
pub fn user_events(values: Vec<Value>, field: &str) -> ApiResult<Vec<UserEvent>> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| user_event(v, &format!("{field}[{i}]")))
        .collect()
}

fn user_event(v: Value, at: &str) -> ApiResult<UserEvent> {
    let Value::Object(mut obj) = v else {
        return Err(ApiError::invalid(format!("{at}: expected an event object")));
    };
    let kind = match obj.remove("type") {
        Some(Value::String(t)) => t,
        _ => {
            return Err(ApiError::invalid(format!(
                "{at}.type: missing; expected one of {}",
                UserEvent::TYPES.join(", ")
            )));
        }
    };
    let rest = Value::Object(obj);
    Ok(match kind.as_str() {
        "user.message" => UserEvent::Message(parse_at(rest, at)?),
        "user.interrupt" => UserEvent::Interrupt(parse_at(rest, at)?),
        "user.custom_tool_result" => UserEvent::CustomToolResult(parse_at(rest, at)?),
        "user.tool_confirmation" => UserEvent::ToolConfirmation(parse_at(rest, at)?),
        "user.define_outcome" => UserEvent::DefineOutcome(parse_at(rest, at)?),
        other => {
            return Err(ApiError::invalid(format!(
                "{at}.type: {other:?} is not an event a client can send; expected one of {}",
                UserEvent::TYPES.join(", ")
            )));
        }
    })
}

#[derive(Serialize)]
struct Sent {
    data: Vec<Event>,
}

/// Check what the types cannot: non-empty messages, and results that answer a real call.
/// `logs` holds the log each event goes to; None for a session not created yet.
pub async fn validate_events(
    st: &AppState,
    logs: Option<&[String]>,
    events: &[UserEvent],
    field: &str,
) -> ApiResult<()> {
    for (i, e) in events.iter().enumerate() {
        let session_id = logs.and_then(|l| l.get(i)).map(String::as_str);
        match e {
            UserEvent::Message(m) if m.content.is_empty() => {
                return Err(ApiError::invalid(format!(
                    "{field}[{i}].content: a user.message needs at least one content block"
                )));
            }
            UserEvent::CustomToolResult(_) | UserEvent::ToolConfirmation(_) => {
                let (id, name, want) = match e {
                    UserEvent::CustomToolResult(p) => (
                        &p.custom_tool_use_id,
                        "custom_tool_use_id",
                        "agent.custom_tool_use",
                    ),
                    UserEvent::ToolConfirmation(p) => {
                        (&p.tool_use_id, "tool_use_id", "agent.tool_use")
                    }
                    UserEvent::Message(_)
                    | UserEvent::Interrupt(_)
                    | UserEvent::DefineOutcome(_) => continue,
                };
                let Some(sid) = session_id else {
                    return Err(ApiError::invalid(format!(
                        "{field}[{i}].{name}: a new session has no {want} to answer"
                    )));
                };
                let place = if e.thread().is_some() {
                    "this thread"
                } else {
                    "this session"
                };
                let found = match st.store.event_position(sid, id).await? {
                    Some(seq) => st.store.read(sid, seq - 1, 1).await?.into_iter().next(),
                    None => None,
                };
                let found = found.filter(|e| e.event.body.type_name() == want);
                let Some(found) = found else {
                    return Err(ApiError::invalid(format!(
                        "{field}[{i}].{name}: {id:?} is not the id of an {want} event in {place}"
                    )));
                };
                if let (
                    UserEvent::ToolConfirmation(_),
                    EventBody::AgentToolUse {
                        evaluated_permission,
                        ..
                    },
                ) = (e, &found.event.body)
                    && *evaluated_permission != Some(agentd_wire::event::Permission::Ask)
                {
                    return Err(ApiError::invalid(format!(
                        "{field}[{i}].tool_use_id: {id:?} does not wait for a confirmation (its permission is not ask)"
                    )));
                }
            }
            UserEvent::DefineOutcome(d) => {
                if d.description.trim().is_empty() {
                    return Err(ApiError::invalid(format!(
                        "{field}[{i}].description: must not be empty"
                    )));
                }
                if let Some(n) = d
                    .max_iterations
                    .filter(|n| !(1..=agentd_wire::event::OUTCOME_MAX_ITERATIONS).contains(n))
                {
                    return Err(ApiError::invalid(format!(
                        "{field}[{i}].max_iterations: {n} is not between 1 and {}",
                        agentd_wire::event::OUTCOME_MAX_ITERATIONS
                    )));
                }
            }
            UserEvent::Message(_) | UserEvent::Interrupt(_) => {}
        }
    }
    Ok(())
}

/// Largest rubric file accepted.
const MAX_RUBRIC_BYTES: usize = 256 * 1024;
/// Most rubric text one request may copy into the log, however many outcomes name files.
const MAX_RUBRICS_PER_REQUEST: usize = 1024 * 1024;

/// The text of each file rubric among `events` (None for other events), checked to be a text
/// file of workspace `ws`. The text goes into the log with the event, so the outcome does not
/// depend on the file staying.
pub async fn file_rubrics(
    st: &AppState,
    ws: &str,
    events: Vec<UserEvent>,
    field: &str,
) -> ApiResult<Vec<(UserEvent, Option<Private>)>> {
    let mut out = Vec::with_capacity(events.len());
    let mut read: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut copied = 0usize;
    for (i, e) in events.into_iter().enumerate() {
        let file_id = match &e {
            UserEvent::DefineOutcome(d) => match &d.rubric {
                agentd_wire::event::Rubric::File { file_id } => Some(file_id.clone()),
                agentd_wire::event::Rubric::Text { .. } => None,
            },
            _ => None,
        };
        let Some(file_id) = file_id else {
            out.push((e, None));
            continue;
        };
        let at = format!("{field}[{i}].rubric.file_id");
        let text = match read.get(&file_id) {
            Some(t) => t.clone(),
            None => {
                let t = rubric_text(st, ws, &file_id, &at).await?;
                read.insert(file_id, t.clone());
                t
            }
        };
        copied += text.len();
        if copied > MAX_RUBRICS_PER_REQUEST {
            return Err(ApiError::invalid(format!(
                "{at}: the rubrics of one request may hold at most {MAX_RUBRICS_PER_REQUEST} bytes in all"
            )));
        }
        out.push((e, Some(Private::Rubric { text })));
    }
    Ok(out)
}

/// A rubric file's text, sized before it is read.
async fn rubric_text(st: &AppState, ws: &str, file_id: &str, at: &str) -> ApiResult<String> {
    fn found<T>(r: Result<T, agentd_store::Error>, at: &str) -> ApiResult<T> {
        match r {
            Ok(v) => Ok(v),
            Err(agentd_store::Error::NotFound(m)) => Err(ApiError::invalid(format!("{at}: {m}"))),
            Err(e) => Err(e.into()),
        }
    }
    let meta = found(st.store.get_file(ws, file_id).await, at)?;
    if meta.size_bytes as usize > MAX_RUBRIC_BYTES {
        return Err(ApiError::invalid(format!(
            "{at}: {} is {} bytes; a rubric file may hold at most {MAX_RUBRIC_BYTES}",
            meta.filename, meta.size_bytes
        )));
    }
    let (meta, bytes) = found(st.store.file_content(ws, file_id).await, at)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        ApiError::invalid(format!(
            "{at}: {} ({}) is not UTF-8 text; a rubric file must be text",
            meta.filename, meta.mime_type
        ))
    })?;
    if text.trim().is_empty() {
        return Err(ApiError::invalid(format!(
            "{at}: {} is empty",
            meta.filename
        )));
    }
    Ok(text)
}

async fn send(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
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
        let origin = match inbox::answered_call(e) {
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
                Err(agentd_store::Error::NotFound(m)) => {
                    return Err(ApiError::invalid(format!(
                        "events[{i}].session_thread_id: {m} in session {id}"
                    )));
                }
                Err(e) => return Err(e.into()),
            },
        });
    }
    validate_events(&st, Some(&logs), &req.events, "events").await?;
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
    for d in inbox::deliver(&id, addressed, &threads) {
        let (_, stored) = st.store.append(&d.log_id, d.guard).await?;
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
        None => agentd_store::Order::Asc,
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

fn sse_event(e: &StoredEvent) -> Sse {
    let data = serde_json::to_string(&e.event).unwrap_or_default();
    Sse::default()
        .event(e.event.body.type_name())
        .id(e.event.id.clone())
        .data(data)
}

async fn stream(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Query,
) -> ApiResult<axum::response::Response> {
    st.store.get_session(&ws.id, &id).await?;
    stream_log(st, id, headers, q).await
}

/// The SSE stream of log `id`, whose session the caller was checked to own.
pub async fn stream_log(
    st: AppState,
    id: String,
    headers: HeaderMap,
    q: Query,
) -> ApiResult<axum::response::Response> {
    let mut kinds = HashSet::new();
    for k in q.all("event_deltas") {
        if !matches!(k.as_str(), "agent.message" | "agent.thinking") {
            return Err(ApiError::invalid(format!(
                "event_deltas: {k:?} is not agent.message or agent.thinking"
            )));
        }
        kinds.insert(k);
    }
    // Subscribe before reading the head, so nothing appended in between goes unseen.
    let mut tail = st.store.subscribe(&id);
    let mut previews = (!kinds.is_empty()).then(|| st.previews.subscribe(&id));
    let head = st.store.head(&id).await?;
    let mut cursor = match headers.get("last-event-id").and_then(|v| v.to_str().ok()) {
        Some(last) => st.store.event_position(&id, last).await?.ok_or_else(|| {
            ApiError::invalid(format!(
                "Last-Event-ID: {last:?} is not an event of this stream; reconnect without it and list the history"
            ))
        })?,
        None => head.last_seq,
    };
    let (tx, rx) = mpsc::channel::<Result<Sse, Infallible>>(256);
    tokio::spawn(async move {
        let mut announced: HashSet<String> = HashSet::new();
        // Previews wait here until the log events they follow have been sent.
        let mut pending: VecDeque<Published> = VecDeque::new();
        loop {
            loop {
                let batch = match st.store.read(&id, cursor, 500).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(session = %id, error = %e, "stream read failed");
                        return;
                    }
                };
                // Every preview of an event in this batch was published before the event was
                // committed, so it is queued by now.
                drain(&mut previews, &mut pending);
                for e in &batch {
                    // Previews made before this event was written go out before it.
                    if !send_previews(&tx, &mut pending, e.seq - 1, &kinds, &mut announced).await {
                        return;
                    }
                    cursor = e.seq;
                    if e.event.body.is_internal() {
                        continue;
                    }
                    if tx.send(Ok(sse_event(e))).await.is_err() {
                        return;
                    }
                }
                if batch.len() < 500 {
                    break;
                }
            }
            if !send_previews(&tx, &mut pending, cursor, &kinds, &mut announced).await {
                return;
            }
            if *tail.borrow() == agentd_session::DELETED {
                let gone = serde_json::json!({
                    "id": agentd_wire::ids::new(agentd_wire::ids::Kind::Event),
                    "type": "session.deleted",
                    "processed_at": chrono::Utc::now(),
                });
                let _ = tx
                    .send(Ok(Sse::default()
                        .event("session.deleted")
                        .data(gone.to_string())))
                    .await;
                return;
            }
            tokio::select! {
                biased;
                p = next_preview(&mut previews) => match p {
                    Ok(p) => {
                        pending.push_back(p);
                        drain(&mut previews, &mut pending);
                        if !send_previews(&tx, &mut pending, cursor, &kinds, &mut announced).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => previews = None,
                },
                r = tail.changed() => if r.is_err() { return },
                () = tx.closed() => return,
            }
        }
    });
    Ok(axum::response::Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Move every queued preview into `pending`.
fn drain(rx: &mut Option<broadcast::Receiver<Published>>, pending: &mut VecDeque<Published>) {
    while let Some(r) = rx.as_mut() {
        match r.try_recv() {
            Ok(p) => pending.push_back(p),
            Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(broadcast::error::TryRecvError::Empty) => return,
            Err(broadcast::error::TryRecvError::Closed) => *rx = None,
        }
    }
}

/// Send the pending previews that follow log positions up to `upto`, in order. False when
/// the client is gone.
async fn send_previews(
    tx: &mpsc::Sender<Result<Sse, Infallible>>,
    pending: &mut VecDeque<Published>,
    upto: u64,
    kinds: &HashSet<String>,
    announced: &mut HashSet<String>,
) -> bool {
    while pending.front().is_some_and(|p| p.after <= upto) {
        let Some(p) = pending.pop_front() else { break };
        if let Some(ev) = preview_event(&p.preview, kinds, announced)
            && tx.send(Ok(ev)).await.is_err()
        {
            return false;
        }
    }
    true
}

async fn next_preview(
    rx: &mut Option<broadcast::Receiver<Published>>,
) -> Result<Published, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Only previews of the requested kinds; deltas only for events whose start was sent.
fn preview_event(
    p: &Preview,
    kinds: &HashSet<String>,
    announced: &mut HashSet<String>,
) -> Option<Sse> {
    let name = match p {
        Preview::EventStart { event } => {
            if !kinds.contains(&event.kind) {
                return None;
            }
            announced.insert(event.id.clone());
            "event_start"
        }
        Preview::EventDelta { event_id, .. } => {
            if !announced.contains(event_id) {
                return None;
            }
            "event_delta"
        }
    };
    Some(
        Sse::default()
            .event(name)
            .data(serde_json::to_string(p).unwrap_or_default()),
    )
}
