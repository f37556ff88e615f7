//! `SessionLog` on SQLite.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

use agentd_session::{
    Error, Guard, Head, NewEvent, Private, Refusal, Result, SessionLog, StoredEvent,
};
use agentd_wire::session::{OutcomeEvaluation, OutcomeEvaluationTag};
use agentd_wire::{Event, EventBody, SessionStatus, Usage};

use crate::{Store, time};

#[async_trait]
impl SessionLog for Store {
    async fn append(&self, log_id: &str, guard: Guard) -> Result<(Head, Vec<StoredEvent>)> {
        let lid = log_id.to_owned();
        let (out, touched) = self
            .db
            .write(move |c| {
                let mut touched = Vec::new();
                let out = append_in(c, &lid, guard, &mut touched).map_err(crate::Error::Log)?;
                Ok((out, touched))
            })
            .await
            .map_err(into_log_error)?;
        for (log, tail) in touched {
            self.notify(&log, tail);
        }
        Ok(out)
    }

    async fn read(&self, log_id: &str, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        let sid = log_id.to_owned();
        self.db
            .read(move |c| read_in(c, &sid, after, limit))
            .await
            .map_err(into_log_error)
    }

    async fn head(&self, log_id: &str) -> Result<Head> {
        let lid = log_id.to_owned();
        self.db
            .read(move |c| {
                let p = load(c, &lid).map_err(crate::Error::Log)?;
                Ok(Head {
                    status: p.status,
                    last_seq: p.last_seq,
                })
            })
            .await
            .map_err(into_log_error)
    }

    fn subscribe(&self, log_id: &str) -> watch::Receiver<u64> {
        let mut tails = match self.tails.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        tails
            .entry(log_id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

impl Store {
    pub(crate) fn notify(&self, session_id: &str, tail: u64) {
        let mut tails = match self.tails.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        if let Some(tx) = tails.get(session_id) {
            if tx.receiver_count() == 0 {
                tails.remove(session_id);
            } else {
                tx.send_replace(tail);
            }
        }
    }
}

/// Which row holds a log's projections: the session's own (its primary thread) or a child
/// thread's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Session,
    Thread,
}

impl Owner {
    fn of(log_id: &str) -> Owner {
        if log_id.starts_with(agentd_wire::ids::Kind::Thread.prefix()) {
            Owner::Thread
        } else {
            Owner::Session
        }
    }
}

/// The row fields the projection maintains, for one log.
struct Projection {
    owner: Owner,
    /// The session the log belongs to.
    session_id: String,
    status: SessionStatus,
    last_seq: u64,
    usage: Usage,
    outcomes: Vec<OutcomeEvaluation>,
    active_ms: i64,
    running_since: Option<agentd_wire::Timestamp>,
}

fn load(c: &Connection, log_id: &str) -> Result<Projection> {
    let owner = Owner::of(log_id);
    let sql = match owner {
        Owner::Session => {
            "SELECT status, last_seq, usage, active_ms, running_since, outcomes, id FROM sessions WHERE id = ?1"
        }
        Owner::Thread => {
            "SELECT status, last_seq, usage, active_ms, running_since, '[]', session_id FROM threads WHERE id = ?1"
        }
    };
    let row = c
        .query_row(sql, [log_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })
        .optional()
        .map_err(storage)?
        .ok_or_else(|| Error::NotFound(log_id.to_owned()))?;
    Ok(Projection {
        owner,
        session_id: row.6,
        status: SessionStatus::parse(&row.0)
            .ok_or_else(|| Error::Storage(format!("unknown status {:?}", row.0)))?,
        last_seq: row.1 as u64,
        usage: serde_json::from_str(&row.2).map_err(storage)?,
        outcomes: serde_json::from_str(&row.5).map_err(storage)?,
        active_ms: row.3,
        running_since: time::parse_opt(row.4).map_err(storage)?,
    })
}

fn save(c: &Connection, log_id: &str, p: &Projection, now: &str) -> Result<()> {
    let usage = serde_json::to_string(&p.usage).map_err(storage)?;
    let since = p.running_since.as_ref().map(time::fmt);
    match p.owner {
        Owner::Session => c.execute(
            "UPDATE sessions SET status = ?2, last_seq = ?3, usage = ?4, active_ms = ?5, running_since = ?6, updated_at = ?7, outcomes = ?8 WHERE id = ?1",
            params![
                log_id,
                p.status.as_str(),
                p.last_seq as i64,
                usage,
                p.active_ms,
                since,
                now,
                serde_json::to_string(&p.outcomes).map_err(storage)?
            ],
        ),
        Owner::Thread => c.execute(
            "UPDATE threads SET status = ?2, last_seq = ?3, usage = ?4, active_ms = ?5, running_since = ?6, updated_at = ?7 WHERE id = ?1",
            params![log_id, p.status.as_str(), p.last_seq as i64, usage, p.active_ms, since, now],
        ),
    }
    .map_err(storage)?;
    Ok(())
}

/// Append to `log_id` what the guard allows, and the events it addresses to other logs of the
/// same session; return the head of `log_id` and what was stored there. `touched` collects
/// every log whose tail moved, for the caller to notify.
#[expect(clippy::too_many_lines, reason = "split in issue 15")]
pub(crate) fn append_in(
    c: &Connection,
    log_id: &str,
    guard: Guard,
    touched: &mut Vec<(String, u64)>,
) -> Result<(Head, Vec<StoredEvent>)> {
    let target = load(c, log_id)?;
    let head = Head {
        status: target.status,
        last_seq: target.last_seq,
    };
    let batch = guard(&head)?;
    if batch.is_empty() {
        return Ok((head, vec![]));
    }
    let now = time::now();
    let now_s = time::fmt(&now);
    let mut stmt = c
        .prepare_cached(
            "INSERT INTO events (session_id, seq, id, type, processed_at, body, private) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(storage)?;
    // Every log this batch touches, the target first.
    let mut logs: Vec<(String, Projection)> = vec![(log_id.to_owned(), target)];
    let mut stored = Vec::with_capacity(batch.len());
    for NewEvent {
        id,
        mut body,
        private,
        to,
    } in batch
    {
        let at = match to.as_deref().filter(|t| *t != log_id) {
            None => 0,
            Some(other) => match logs.iter().position(|(l, _)| l == other) {
                Some(i) => i,
                None => {
                    let p = load(c, other)?;
                    if p.session_id != logs[0].1.session_id {
                        return Err(Refusal::Invalid(format!(
                            "{other} is not a thread of this session"
                        ))
                        .into());
                    }
                    logs.push((other.to_owned(), p));
                    logs.len() - 1
                }
            },
        };
        let (seq, thread_tokens) = {
            let p = &mut logs[at].1;
            p.last_seq += 1;
            let before = p.usage;
            project(p, &body, now);
            if let Some(Private::Compaction { usage, .. }) = &private {
                // The summary's tokens are spent like a turn's.
                p.usage.add(usage);
            }
            if let EventBody::SessionUsage { usage } = &mut body {
                // A snapshot of the log's usage as of this event: on a session's log, that
                // counts its threads' tokens too, which only the projection knows.
                *usage = Usage {
                    active_seconds: None,
                    ..p.usage
                };
            }
            let mut delta = p.usage;
            delta.subtract(&before);
            let thread = p.owner == Owner::Thread && delta != Usage::default();
            (p.last_seq, thread.then(|| (p.session_id.clone(), delta)))
        };
        if let Some((sid, delta)) = thread_tokens {
            // A thread's tokens count toward its session's usage too: in the projection this
            // batch saves at its end when it holds one, else in the row.
            match logs.iter_mut().find(|(l, _)| *l == sid) {
                Some((_, session)) => session.usage.add_usage(&delta),
                None => add_session_usage(c, &sid, &delta)?,
            }
        }
        let (lid, p) = &mut logs[at];
        if let (
            EventBody::SessionThreadCreated {
                session_thread_id,
                agent_name,
            },
            Some(Private::Thread { agent }),
        ) = (&body, &private)
        {
            create_thread(c, lid, p, session_thread_id, agent_name, agent, &now_s)?;
        }
        let private_json = private
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(storage)?;
        stmt.execute(params![
            lid.as_str(),
            seq as i64,
            id,
            body.type_name(),
            now_s,
            serde_json::to_string(&body).map_err(storage)?,
            private_json
        ])
        .map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => Error::Refused(Refusal::Invalid(
                format!("{}: that tool call was already answered", body.type_name()),
            )),
            _ => storage(e),
        })?;
        if at == 0 {
            stored.push(StoredEvent {
                seq,
                event: Event {
                    id,
                    processed_at: now,
                    body,
                },
                private,
            });
        }
    }
    for (lid, p) in &logs {
        save(c, lid, p, &now_s)?;
        touched.push((lid.clone(), p.last_seq));
    }
    let target = &logs[0].1;
    Ok((
        Head {
            status: target.status,
            last_seq: target.last_seq,
        },
        stored,
    ))
}

fn add_session_usage(c: &Connection, session_id: &str, delta: &Usage) -> Result<()> {
    let usage: String = c
        .query_row(
            "SELECT usage FROM sessions WHERE id = ?1",
            [session_id],
            |r| r.get(0),
        )
        .map_err(storage)?;
    let mut usage: Usage = serde_json::from_str(&usage).map_err(storage)?;
    usage.add_usage(delta);
    c.execute(
        "UPDATE sessions SET usage = ?2 WHERE id = ?1",
        params![session_id, serde_json::to_string(&usage).map_err(storage)?],
    )
    .map_err(storage)?;
    Ok(())
}

/// The row of a thread whose `session.thread_created` is being appended to `parent_log`.
fn create_thread(
    c: &Connection,
    parent_log: &str,
    parent: &Projection,
    thread_id: &str,
    agent_name: &str,
    agent: &agentd_wire::session::SessionAgent,
    now: &str,
) -> Result<()> {
    let parent_thread = match parent.owner {
        Owner::Session => agentd_wire::ids::primary_thread(parent_log),
        Owner::Thread => parent_log.to_owned(),
    };
    c.execute(
        "INSERT INTO threads (id, session_id, parent_thread_id, agent_name, agent, status, usage, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'idle', ?6, ?7, ?7)",
        params![
            thread_id,
            parent.session_id,
            parent_thread,
            agent_name,
            serde_json::to_string(agent).map_err(storage)?,
            serde_json::to_string(&Usage::default()).map_err(storage)?,
            now
        ],
    )
    .map_err(storage)?;
    Ok(())
}

fn project(p: &mut Projection, body: &EventBody, now: agentd_wire::Timestamp) {
    match body {
        EventBody::SpanModelRequestEnd { model_usage, .. } => p.usage.add(model_usage),
        EventBody::UserDefineOutcome {
            outcome_id,
            description,
            ..
        } => p.outcomes.push(OutcomeEvaluation {
            kind: OutcomeEvaluationTag::OutcomeEvaluation,
            outcome_id: outcome_id.clone(),
            description: description.clone(),
            iteration: 0,
            result: "pending".into(),
            explanation: None,
            completed_at: None,
        }),
        EventBody::SpanModelRequestStart {} => {
            for o in p
                .outcomes
                .iter_mut()
                .filter(|o| matches!(o.result.as_str(), "pending" | "needs_revision"))
            {
                o.result = "running".into();
            }
        }
        EventBody::SpanOutcomeEvaluationStart {
            outcome_id,
            iteration,
        } => {
            if let Some(o) = p.outcomes.iter_mut().find(|o| o.outcome_id == *outcome_id) {
                o.result = "evaluating".into();
                o.iteration = *iteration;
            }
        }
        EventBody::SpanOutcomeEvaluationEnd {
            outcome_id,
            iteration,
            result,
            explanation,
            usage,
            ..
        } => {
            p.usage.add(usage);
            if let Some(o) = p.outcomes.iter_mut().find(|o| o.outcome_id == *outcome_id) {
                o.result = result.clone();
                o.iteration = *iteration;
                o.explanation = Some(explanation.clone());
                o.completed_at = (result != "needs_revision").then_some(now);
            }
        }
        _ => {}
    }
    let Some(next) = agentd_session::status_after(body) else {
        return;
    };
    match (p.running_since, next) {
        (None, SessionStatus::Running) => p.running_since = Some(now),
        (Some(since), s) if s != SessionStatus::Running => {
            p.active_ms += (now - since).num_milliseconds().max(0);
            p.running_since = None;
        }
        _ => {}
    }
    p.status = next;
}

pub(crate) fn read_in(
    c: &Connection,
    sid: &str,
    after: u64,
    limit: usize,
) -> crate::Result<Vec<StoredEvent>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, id, processed_at, body, private FROM events WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![sid, after as i64, limit as i64], row_to_event)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

/// Decode one `events` row selected as `seq, id, processed_at, body, private`.
pub(crate) fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<crate::Result<StoredEvent>> {
    let seq: i64 = r.get(0)?;
    let id: String = r.get(1)?;
    let processed_at = time::parse(&r.get::<_, String>(2)?)?;
    let body: String = r.get(3)?;
    let private: Option<String> = r.get(4)?;
    Ok((|| {
        Ok(StoredEvent {
            seq: seq as u64,
            event: Event {
                id,
                processed_at,
                body: serde_json::from_str(&body)?,
            },
            private: private
                .map(|p| serde_json::from_str::<Private>(&p))
                .transpose()?,
        })
    })())
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::Storage(e.to_string())
}

fn into_log_error(e: crate::Error) -> Error {
    match e {
        crate::Error::Log(e) => e,
        other => Error::Storage(other.to_string()),
    }
}
