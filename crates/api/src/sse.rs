//! The SSE stream of a log: fed from the log after each durable append, with live previews of
//! messages still streaming interleaved where they belong. Shared by sessions and threads.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;

use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event as Sse, KeepAlive};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use agentd_brain::Published;
use agentd_session::StoredEvent;
use agentd_wire::event::Preview;

use crate::error::{ApiError, ApiResult};
use crate::extract::Query;
use crate::{AppState, KeyId};

fn sse_event(e: &StoredEvent) -> Sse {
    let data = serde_json::to_string(&e.event).unwrap_or_default();
    Sse::default()
        .event(e.event.body.type_name())
        .id(e.event.id.clone())
        .data(data)
}

/// The SSE stream of log `id`, whose session the caller was checked to own.
pub async fn stream_log(
    st: AppState,
    id: String,
    key: KeyId,
    headers: HeaderMap,
    q: Query,
) -> ApiResult<axum::response::Response> {
    // Held by the body, so it is let go when hyper drops a response whose client left.
    let slot = st.streams.open(key)?;
    let mut closing = st.streams.closing();
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
                // The only change is to true: the server is shutting down.
                _ = closing.changed() => return,
            }
        }
    });
    let events = ReceiverStream::new(rx).map(move |e| {
        let _ = &slot;
        e
    });
    Ok(axum::response::Sse::new(events)
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
