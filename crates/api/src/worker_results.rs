//! What a worker may send to a session, beyond what `user_events` checks for every client: a
//! `user.tool_result` answers an open built-in call of a `self_hosted` environment's session,
//! once; a worker acting with a work item's secret sends only results, and only while its
//! claim holds the item's lease. A lost worker's late answer is refused, never logged twice.
//! Refusals are 400s: they are final, and the SDK retries a 409.

use agentd_wire::environment::EnvironmentConfig;
use agentd_wire::event::UserEvent;
use agentd_wire::work::WorkState;
use agentd_wire::{ErrorKind, EventBody};

use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};

/// The built-in tools a worker runs; the brain answers the rest (web tools, thread tools).
const WORKER_TOOLS: &[&str] = &["bash", "read", "write", "edit", "glob", "grep"];

pub async fn check(
    st: &AppState,
    p: &Principal,
    session_id: &str,
    events: &[UserEvent],
) -> ApiResult<()> {
    holder_may_answer(st, p, session_id, events).await?;
    let mut self_hosted = None;
    for (i, e) in events.iter().enumerate() {
        let UserEvent::ToolResult(r) = e else {
            continue;
        };
        let at = format!("events[{i}].tool_use_id");
        if self_hosted.is_none() {
            let s = st
                .store
                .session_environment(session_id)
                .await
                .map_err(|e| ApiError::new(ErrorKind::ApiError, e.to_string()))?;
            self_hosted = Some(matches!(s, EnvironmentConfig::SelfHosted {}));
        }
        if self_hosted == Some(false) {
            return Err(ApiError::invalid(format!(
                "events[{i}].type: user.tool_result answers the calls of a self_hosted environment's session; this session's tools run in agentd's sandboxes"
            )));
        }
        let log = match &r.session_thread_id {
            Some(t) => t.clone(),
            None => session_id.to_owned(),
        };
        let Some(seq) = st.store.event_position(&log, &r.tool_use_id).await? else {
            continue; // `validate_events` has refused it already.
        };
        let mut after = seq - 1;
        let mut first = true;
        loop {
            let page = st.store.read(&log, after, 1000).await?;
            let n = page.len();
            for ev in &page {
                match &ev.event.body {
                    EventBody::AgentToolUse { name, .. } if first => {
                        first = false;
                        if !WORKER_TOOLS.contains(&name.as_str()) {
                            return Err(ApiError::invalid(format!(
                                "{at}: {:?} calls {name}, which agentd runs itself; a worker answers {}",
                                r.tool_use_id,
                                WORKER_TOOLS.join(", ")
                            )));
                        }
                    }
                    EventBody::AgentToolResult { tool_use_id, .. }
                    | EventBody::UserToolResult { tool_use_id, .. }
                        if *tool_use_id == r.tool_use_id =>
                    {
                        return Err(ApiError::invalid(format!(
                            "{at}: {:?} was already answered",
                            r.tool_use_id
                        )));
                    }
                    EventBody::UserInterrupt { .. } => {
                        return Err(ApiError::invalid(format!(
                            "{at}: {:?} was interrupted by the user; its result is no longer wanted",
                            r.tool_use_id
                        )));
                    }
                    _ => {}
                }
                after = ev.seq;
            }
            if n < 1000 {
                break;
            }
        }
    }
    Ok(())
}

/// A worker's credential sends only results, and only while it holds the session's work.
async fn holder_may_answer(
    st: &AppState,
    p: &Principal,
    session_id: &str,
    events: &[UserEvent],
) -> ApiResult<()> {
    let held = match p {
        Principal::Work { work_id, claim, .. } => {
            Some((st.store.get_work(work_id).await?, Some(*claim)))
        }
        // The SDK's worker without a secret: the session's live item in the key's environment.
        Principal::Environment { environment_id, .. } => {
            let live = crate::worker_calls::live_item(st, session_id, environment_id).await?;
            Some((
                live.ok_or_else(|| {
                    ApiError::invalid(format!(
                        "session {session_id} has no live work in environment {environment_id}, so its results are refused"
                    ))
                })?,
                None,
            ))
        }
        Principal::ApiKey(_) => None,
    };
    if let Some((w, claim)) = held {
        if let Some(i) = events
            .iter()
            .position(|e| !matches!(e, UserEvent::ToolResult(_) | UserEvent::CustomToolResult(_)))
        {
            return Err(ApiError::new(
                ErrorKind::PermissionError,
                format!(
                    "events[{i}].type: a worker's credential sends tool results only; the user's events need an API key"
                ),
            ));
        }
        // A worker asked to stop may still answer the call it was running; a lapsed lease
        // is final (the sweeper may have answered its calls already).
        let holds = matches!(
            w.state,
            WorkState::Starting | WorkState::Active | WorkState::Stopping
        );
        if claim.is_some_and(|c| c != w.claim) || !holds || w.lease_lapsed(chrono::Utc::now()) {
            return Err(ApiError::invalid(format!(
                "work {} is no longer held by this worker (state {}): its lease was lost or it was stopped, so its results are refused",
                w.id,
                w.state.as_str()
            )));
        }
    }
    Ok(())
}
