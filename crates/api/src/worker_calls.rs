//! The calls a self-hosted session's worker has open, and closing them. A call a worker may
//! have started is never left for the next worker to run again silently: when the user
//! interrupts or speaks, when the operator stops the work, when the session is archived or
//! when the worker's lease lapses, each open call gets an error `user.tool_result` — the
//! answer the SDK's worker reconciles against — saying why, and a late answer from the worker
//! is refused as a second one.

use agentd_session::{NewEvent, StoredEvent, events};
use agentd_wire::{ContentBlock, EventBody};

use crate::AppState;

/// Why the calls were closed; each says what the model should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    Interrupted,
    UserSpoke,
    LeaseExpired,
    Stopped,
    Archived,
}

impl Closed {
    fn text(self) -> &'static str {
        match self {
            Closed::Interrupted => {
                "The user interrupted before the worker answered this call, so it may have partly run. Check the state it would have changed before trying it again."
            }
            Closed::UserSpoke => {
                "The user sent a new message before the worker answered this call, so its result is no longer awaited; it may have partly run. Check the state it would have changed before trying it again."
            }
            Closed::LeaseExpired => {
                "The worker running this call stopped answering (its lease expired), so the call may have partly run. Check the state it would have changed before trying it again."
            }
            Closed::Stopped => {
                "The environment's work for this session was stopped before the worker answered this call, so it may have partly run. Check the state it would have changed before trying it again."
            }
            Closed::Archived => {
                "The session was archived before the worker answered this call, so it may have partly run."
            }
        }
    }
}

/// The error answer to `call`.
pub fn answer(call: &str, why: Closed) -> NewEvent {
    NewEvent::new(EventBody::UserToolResult {
        tool_use_id: call.to_owned(),
        content: Some(vec![ContentBlock::text(why.text())]),
        is_error: Some(true),
        session_thread_id: None,
    })
}

/// The session's open built-in calls a worker runs, as the harness's fold sees them.
pub async fn open(st: &AppState, sid: &str) -> Result<Vec<String>, agentd_catalog::Error> {
    let mut log: Vec<StoredEvent> = Vec::new();
    loop {
        let after = log.last().map_or(0, |e| e.seq);
        let page = st.store.read(sid, after, 1000).await?;
        let n = page.len();
        log.extend(page);
        if n < 1000 {
            break;
        }
    }
    let f = agentd_brain::context::fold(&log);
    Ok(match f.next {
        agentd_brain::context::Next::RunTools(work) => work
            .into_iter()
            .filter(|w| w.action == agentd_brain::context::ToolAction::Run && w.name.in_sandbox())
            .map(|w| w.id)
            .collect(),
        _ => Vec::new(),
    })
}

/// Answer every open worker call of session `sid` with an error saying `why`. Each answer is
/// its own append: one the worker's last word got to first is refused and skipped. Whether
/// anything was answered (the session then has something new to fold).
pub async fn close(st: &AppState, sid: &str, why: Closed) -> Result<bool, agentd_catalog::Error> {
    let mut any = false;
    for call in open(st, sid).await? {
        match st.store.append(sid, events(vec![answer(&call, why)])).await {
            Ok(_) => any = true,
            Err(agentd_session::Error::Refused(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(any)
}

/// What a run of the user's events bound for session `sid`'s own log closes: a message or
/// an interrupt ends the calls a self-hosted session's worker has open. The answers go in the
/// same append as the user's events, so no reader ever sees the interrupt with the call still
/// open, and the worker's answer after it is refused as a second one.
pub async fn closed_by(
    st: &AppState,
    sid: &str,
    run: &[agentd_session::inbox::Addressed],
) -> Result<Vec<NewEvent>, agentd_catalog::Error> {
    use agentd_wire::event::UserEvent;
    let why = run.iter().find_map(|a| match &a.event {
        UserEvent::Interrupt(_) => Some(Closed::Interrupted),
        UserEvent::Message(_) => Some(Closed::UserSpoke),
        _ => None,
    });
    let Some(why) = why.filter(|_| run.iter().all(|a| a.log_id == sid)) else {
        return Ok(Vec::new());
    };
    if !self_hosted(st, sid).await? {
        return Ok(Vec::new());
    }
    let answered_here: Vec<&str> = run
        .iter()
        .filter_map(|a| match &a.event {
            UserEvent::ToolResult(r) => Some(r.tool_use_id.as_str()),
            _ => None,
        })
        .collect();
    Ok(open(st, sid)
        .await?
        .into_iter()
        .filter(|c| !answered_here.contains(&c.as_str()))
        .map(|c| answer(&c, why))
        .collect())
}

/// Whether session `sid` runs on a `self_hosted` environment, whose workers run its calls.
pub async fn self_hosted(st: &AppState, sid: &str) -> Result<bool, agentd_catalog::Error> {
    match st.store.session_environment(sid).await {
        Ok(agentd_wire::environment::EnvironmentConfig::SelfHosted {}) => Ok(true),
        Ok(_) | Err(agentd_session::catalog::Error::NotFound(_)) => Ok(false),
        Err(e) => Err(agentd_catalog::Error::Storage(e.to_string())),
    }
}

/// Session `sid`'s live work item in environment `env`, if it has one: what an environment
/// key acts on when it serves the session.
pub async fn live_item(
    st: &AppState,
    sid: &str,
    env: &str,
) -> Result<Option<agentd_catalog::work::WorkItem>, agentd_catalog::Error> {
    Ok(st
        .store
        .session_work(sid)
        .await?
        .into_iter()
        .find(|w| w.environment_id == env && w.state.is_live()))
}
