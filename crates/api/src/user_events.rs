//! A client's events before they reach the inbox: parsed one by one so errors name the full
//! path, checked for what the types cannot say, and file rubrics read into the log.

use serde_json::Value;

use agentd_session::{Private, inbox};
use agentd_wire::event::UserEvent;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::parse_at;

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
        "user.tool_result" => UserEvent::ToolResult(parse_at(rest, at)?),
        "user.define_outcome" => UserEvent::DefineOutcome(parse_at(rest, at)?),
        other => {
            return Err(ApiError::invalid(format!(
                "{at}.type: {other:?} is not an event a client can send; expected one of {}",
                UserEvent::TYPES.join(", ")
            )));
        }
    })
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
            UserEvent::CustomToolResult(_)
            | UserEvent::ToolConfirmation(_)
            | UserEvent::ToolResult(_) => {
                let Some(inbox::Answer {
                    call_id: id,
                    field: name,
                    call_type: want,
                }) = inbox::answer_of(e)
                else {
                    continue;
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
                match inbox::check_answer(e, found.as_ref().map(|f| &f.event.body)) {
                    Ok(()) => {}
                    Err(inbox::Unanswerable::NoSuchCall) => {
                        return Err(ApiError::invalid(format!(
                            "{field}[{i}].{name}: {id:?} is not the id of an {want} event in {place}"
                        )));
                    }
                    Err(inbox::Unanswerable::NotAsking) => {
                        return Err(ApiError::invalid(format!(
                            "{field}[{i}].{name}: {id:?} does not wait for a confirmation (its permission is not ask)"
                        )));
                    }
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
    fn found<T>(r: Result<T, agentd_catalog::Error>, at: &str) -> ApiResult<T> {
        match r {
            Ok(v) => Ok(v),
            Err(agentd_catalog::Error::NotFound(m)) => Err(ApiError::invalid(format!("{at}: {m}"))),
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
