//! What an append writes, decided without storage: positions, finished bodies, projections,
//! and the thread rows a batch creates.
//!
//! A backend runs one append as: load the target log's row, run the guard on its head, load
//! the rows `missing` names until it names none, `plan`, then write the plan in the same
//! transaction. Every rule of what an event means is here or in `projection`.

use agentd_wire::agent::SessionAgent;
use agentd_wire::{Event, EventBody, Timestamp};

use crate::projection::{Projection, Spent};
use crate::{Head, NewEvent, Private, Refusal, StoredEvent};

/// Whose log an id names: a session's own (its primary thread's) or a worker thread's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    Session,
    Thread,
}

impl LogKind {
    pub fn of(log_id: &str) -> LogKind {
        if log_id.starts_with(agentd_wire::ids::Kind::Thread.prefix()) {
            LogKind::Thread
        } else {
            LogKind::Session
        }
    }
}

/// A log's row as the appending transaction loaded it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedLog {
    pub log_id: String,
    /// The session the log belongs to (its own id for a session's log).
    pub session_id: String,
    pub projection: Projection,
}

/// A worker thread's row, created by the `session.thread_created` that names it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewThread {
    pub id: String,
    pub session_id: String,
    pub parent_thread_id: String,
    pub agent_name: String,
    pub agent: SessionAgent,
}

/// A log's projection after the batch, to save in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedLog {
    pub log_id: String,
    pub projection: Projection,
    /// Whether events landed in the log (always so for the target). A log that only counts
    /// its threads' tokens keeps its `updated_at`; a log that neither changed nor was the
    /// target is not saved at all.
    pub appended: bool,
}

/// Everything one append writes, in order: thread rows before the events that address them.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub threads: Vec<NewThread>,
    /// Every event with the log it lands in.
    pub events: Vec<(String, StoredEvent)>,
    pub logs: Vec<SavedLog>,
    /// The target log's head after the batch.
    pub head: Head,
}

impl Plan {
    /// What landed in the target log, in order.
    pub fn stored(&self) -> impl Iterator<Item = &StoredEvent> {
        let target = &self.logs[0].log_id;
        self.events
            .iter()
            .filter(move |(l, _)| l == target)
            .map(|(_, e)| e)
    }
}

/// The logs `plan` needs that are not loaded yet: the other logs the batch addresses, and the
/// session log of every thread log whose tokens it must count. Logs the batch itself creates
/// are not missing. `loaded[0]` is the target.
pub fn missing(loaded: &[LoadedLog], batch: &[NewEvent]) -> Vec<String> {
    let created = created_threads(batch);
    let mut want: Vec<String> = Vec::new();
    let mut need = |id: &str| {
        if !loaded.iter().any(|l| l.log_id == id)
            && !created.contains(&id)
            && !want.iter().any(|w| w == id)
        {
            want.push(id.to_owned());
        }
    };
    for to in batch.iter().filter_map(|e| e.to.as_deref()) {
        need(to);
    }
    for l in loaded {
        if LogKind::of(&l.log_id) == LogKind::Thread {
            need(&l.session_id);
        }
    }
    if !created.is_empty()
        && let Some(target) = loaded.first()
    {
        need(&target.session_id);
    }
    want
}

fn created_threads(batch: &[NewEvent]) -> Vec<&str> {
    batch
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::SessionThreadCreated {
                session_thread_id, ..
            } => Some(session_thread_id.as_str()),
            _ => None,
        })
        .collect()
}

/// Lay out `batch` over the loaded logs (`loaded[0]` the target; `missing` must name none).
pub fn plan(loaded: Vec<LoadedLog>, batch: Vec<NewEvent>, now: Timestamp) -> Result<Plan, Refusal> {
    let mut layout = Layout::new(loaded);
    let mut events = Vec::with_capacity(batch.len());
    for e in batch {
        events.push(layout.place(e, now)?);
    }
    Ok(layout.finish(events))
}

/// The logs of one batch as it is laid out.
struct Layout {
    session_id: String,
    /// Each log and whether events landed in it; the target first.
    logs: Vec<(LoadedLog, bool)>,
    /// The projections as loaded, to tell which changed.
    before: Vec<(String, Projection)>,
    threads: Vec<NewThread>,
}

impl Layout {
    fn new(loaded: Vec<LoadedLog>) -> Self {
        Layout {
            session_id: loaded[0].session_id.clone(),
            before: loaded
                .iter()
                .map(|l| (l.log_id.clone(), l.projection.clone()))
                .collect(),
            logs: loaded.into_iter().map(|l| (l, false)).collect(),
            threads: Vec::new(),
        }
    }

    /// Which loaded log an event goes to.
    fn log_for(&self, to: Option<&str>) -> Result<usize, Refusal> {
        let at = match to {
            None => 0,
            Some(other) => self
                .logs
                .iter()
                .position(|(l, _)| l.log_id == other)
                .ok_or_else(|| Refusal::Invalid(format!("{other} is not a log of this session")))?,
        };
        let log = &self.logs[at].0;
        if log.session_id != self.session_id {
            return Err(Refusal::Invalid(format!(
                "{} is not a thread of this session",
                log.log_id
            )));
        }
        Ok(at)
    }

    /// Give the event its position and finished body, and fold it into its log.
    fn place(&mut self, e: NewEvent, now: Timestamp) -> Result<(String, StoredEvent), Refusal> {
        let NewEvent {
            id,
            mut body,
            private,
            to,
        } = e;
        let at = self.log_for(to.as_deref())?;
        let (log, appended) = &mut self.logs[at];
        *appended = true;
        let spent = log.projection.apply(&mut body, private.as_ref(), now);
        let seq = log.projection.last_seq;
        let log_id = log.log_id.clone();
        if let (
            EventBody::SessionThreadCreated {
                session_thread_id,
                agent_name,
            },
            Some(Private::Thread { agent }),
        ) = (&body, &private)
        {
            self.create_thread(&log_id, session_thread_id, agent_name, agent);
        }
        if LogKind::of(&log_id) == LogKind::Thread && spent != Spent::default() {
            // A thread's tokens count toward its session's usage too.
            let session_id = &self.session_id;
            let (session, _) = self
                .logs
                .iter_mut()
                .find(|(l, _)| l.log_id == *session_id)
                .ok_or_else(|| {
                    Refusal::Invalid(format!("the log of session {session_id} was not loaded"))
                })?;
            session.projection.add_spent(&spent);
        }
        let event = Event {
            id,
            processed_at: now,
            body,
        };
        Ok((
            log_id,
            StoredEvent {
                seq,
                event,
                private,
            },
        ))
    }

    /// A thread started from `parent_log`: its row, and its log, empty, for the rest of the
    /// batch to address.
    fn create_thread(
        &mut self,
        parent_log: &str,
        id: &str,
        agent_name: &str,
        agent: &SessionAgent,
    ) {
        let parent_thread_id = match LogKind::of(parent_log) {
            LogKind::Session => agentd_wire::ids::primary_thread(parent_log),
            LogKind::Thread => parent_log.to_owned(),
        };
        self.threads.push(NewThread {
            id: id.to_owned(),
            session_id: self.session_id.clone(),
            parent_thread_id,
            agent_name: agent_name.to_owned(),
            agent: agent.clone(),
        });
        let log = LoadedLog {
            log_id: id.to_owned(),
            session_id: self.session_id.clone(),
            projection: Projection::default(),
        };
        self.logs.push((log, false));
    }

    fn finish(self, events: Vec<(String, StoredEvent)>) -> Plan {
        let head = self.logs[0].0.projection.head();
        let before = self.before;
        let changed = |l: &LoadedLog| {
            before
                .iter()
                .find(|(id, _)| *id == l.log_id)
                .is_none_or(|(_, p)| *p != l.projection)
        };
        let logs = self
            .logs
            .into_iter()
            .enumerate()
            .filter(|(i, (l, appended))| *i == 0 || *appended || changed(l))
            .map(|(i, (l, appended))| SavedLog {
                log_id: l.log_id,
                projection: l.projection,
                // The target is saved as appended to, whatever the batch held: its head is
                // what the caller reports, and it was the one acted on.
                appended: appended || i == 0,
            })
            .collect();
        Plan {
            threads: self.threads,
            events,
            logs,
            head,
        }
    }
}

#[cfg(test)]
mod tests {
    use agentd_wire::usage::ModelUsage;
    use agentd_wire::{SessionStatus, ids};

    use super::*;

    fn log(log_id: &str, session_id: &str) -> LoadedLog {
        LoadedLog {
            log_id: log_id.into(),
            session_id: session_id.into(),
            projection: Projection::default(),
        }
    }

    fn now() -> Timestamp {
        chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap()
    }

    fn agent() -> SessionAgent {
        serde_json::from_value(serde_json::json!({
            "id": "agent_w", "type": "agent", "version": 1, "name": "worker",
            "model": {"id": "scripted/echo"}, "tools": [], "mcp_servers": [], "skills": [],
            "execution_identity": null
        }))
        .unwrap()
    }

    fn spend(input: u64) -> NewEvent {
        NewEvent::new(EventBody::SpanModelRequestEnd {
            model_request_start_id: "sevt_s".into(),
            is_error: None,
            model_usage: ModelUsage {
                input_tokens: input,
                ..ModelUsage::default()
            },
        })
    }

    #[test]
    fn a_thread_created_and_given_work_in_one_batch_needs_no_row_yet() {
        let session = "sesn_1";
        let tid = ids::new(ids::Kind::Thread);
        let created = NewEvent::new(EventBody::SessionThreadCreated {
            session_thread_id: tid.clone(),
            agent_name: "worker".into(),
        })
        .with_private(Private::Thread {
            agent: Box::new(agent()),
        });
        let task = NewEvent::new(EventBody::SessionStatusRunning {}).to(tid.clone());
        let batch = vec![created, task];
        let loaded = vec![log(session, session)];
        assert!(missing(&loaded, &batch).is_empty());
        let plan = plan(loaded, batch, now()).unwrap();
        assert_eq!(plan.threads.len(), 1);
        let t = &plan.threads[0];
        assert_eq!(t.parent_thread_id, ids::primary_thread(session));
        assert_eq!(
            (t.session_id.as_str(), t.id.as_str()),
            (session, tid.as_str())
        );
        let placed: Vec<(&str, u64)> = plan
            .events
            .iter()
            .map(|(l, e)| (l.as_str(), e.seq))
            .collect();
        assert_eq!(placed, vec![(session, 1), (tid.as_str(), 1)]);
        let thread = plan.logs.iter().find(|l| l.log_id == tid).unwrap();
        assert_eq!(thread.projection.status, SessionStatus::Running);
        assert_eq!(plan.stored().count(), 1);
        assert_eq!(plan.head.last_seq, 1);
    }

    #[test]
    fn a_threads_tokens_count_toward_its_session_which_keeps_its_place() {
        let (session, tid) = ("sesn_1", "sthr_1");
        let batch = vec![spend(7).with_private(Private::Cost {
            pico_usd: 11,
            refused: false,
        })];
        let mut loaded = vec![log(tid, session)];
        assert_eq!(missing(&loaded, &batch), vec![session.to_owned()]);
        loaded.push(log(session, session));
        let plan = plan(loaded, batch, now()).unwrap();
        let s = plan.logs.iter().find(|l| l.log_id == session).unwrap();
        assert_eq!(s.projection.usage.input_tokens, 7);
        assert_eq!(s.projection.cost, 11);
        assert_eq!(s.projection.last_seq, 0);
        assert!(!s.appended);
        assert_eq!(plan.logs[0].projection.usage.input_tokens, 7);
    }

    #[test]
    fn a_log_of_another_session_is_refused() {
        let batch = vec![NewEvent::new(EventBody::SessionStatusRunning {}).to("sthr_x")];
        let loaded = vec![log("sesn_1", "sesn_1"), log("sthr_x", "sesn_2")];
        let err = plan(loaded, batch, now()).unwrap_err();
        assert!(matches!(err, Refusal::Invalid(m) if m.contains("sthr_x")));
    }
}
