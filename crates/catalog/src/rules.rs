//! Rules of the catalog every backend applies the same way: pure functions over rows already
//! read, so a backend only reads, locks and writes.

use agentd_wire::agent::{Agent, AgentSpec};
use agentd_wire::ids;
use agentd_wire::thread::{SessionThread, ThreadStats, ThreadTag};
use agentd_wire::{Session, Usage};

use crate::{AgentEdit, Error, Result};

/// The next version's spec of `current` (the latest version) after `edit`, or None when the
/// edit changes nothing. `expected` guards against lost updates; an archived agent takes none.
pub fn next_version(
    current: &Agent,
    expected: Option<u32>,
    edit: AgentEdit,
) -> Result<Option<AgentSpec>> {
    let id = &current.id;
    if let Some(v) = expected.filter(|v| *v != current.version) {
        return Err(Error::Conflict(format!(
            "agent {id} is at version {}, not {v}; retrieve it and apply your change again",
            current.version
        )));
    }
    if current.archived_at.is_some() {
        return Err(Error::Conflict(format!(
            "agent {id} is archived and cannot be updated"
        )));
    }
    let next = edit(&current.spec)?;
    Ok((next != current.spec).then_some(next))
}

/// A session's primary thread, drawn from the session: its own usage and list cost
/// (`cost`, the session's in picodollars) are the session's less its children's, and it shows
/// no roster (the roster is the session's).
pub fn primary_thread<'a>(
    s: Session,
    cost: u64,
    children: impl IntoIterator<Item = (&'a Usage, u64)>,
) -> SessionThread {
    let mut usage = s.usage.clone();
    let mut cost = cost;
    for (child, child_cost) in children {
        usage.subtract(child);
        cost = cost.saturating_sub(child_cost);
    }
    let usage = agentd_session::projection::shown_usage(&usage, cost, Some(s.stats.active_seconds));
    let mut agent = s.agent;
    agent.spec.multiagent = None;
    SessionThread {
        id: ids::primary_thread(&s.id),
        kind: ThreadTag::SessionThread,
        session_id: s.id,
        parent_thread_id: None,
        agent,
        status: s.status,
        usage: Some(usage),
        stats: Some(ThreadStats {
            active_seconds: s.stats.active_seconds,
            duration_seconds: s.stats.duration_seconds,
        }),
        workflow_run_id: None,
        created_at: s.created_at,
        updated_at: s.updated_at,
        archived_at: s.archived_at,
    }
}

/// Whether vault `id`, entry `i` of a new session's `vault_ids`, may serve it: `archived` is
/// None for a vault the workspace does not have.
pub fn session_vault(i: usize, id: &str, archived: Option<bool>) -> Result<()> {
    match archived {
        None => Err(Error::NotFound(format!(
            "vault_ids[{i}]: vault {id} not found"
        ))),
        Some(true) => Err(Error::Invalid(format!(
            "vault_ids[{i}]: vault {id} is archived; archived vaults cannot serve new sessions"
        ))),
        Some(false) => Ok(()),
    }
}
