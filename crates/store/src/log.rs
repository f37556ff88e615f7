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
    async fn append(&self, session_id: &str, guard: Guard) -> Result<(Head, Vec<StoredEvent>)> {
        let sid = session_id.to_owned();
        let out = self
            .db
            .write(move |c| append_in(c, &sid, guard).map_err(crate::Error::Log))
            .await
            .map_err(into_log_error)?;
        if !out.1.is_empty() {
            self.notify(session_id, out.0.last_seq);
        }
        Ok(out)
    }

    async fn read(&self, session_id: &str, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        let sid = session_id.to_owned();
        self.db
            .read(move |c| read_in(c, &sid, after, limit))
            .await
            .map_err(into_log_error)
    }

    async fn head(&self, session_id: &str) -> Result<Head> {
        let sid = session_id.to_owned();
        self.db
            .read(move |c| {
                let (status, last_seq): (String, i64) = c
                    .query_row(
                        "SELECT status, last_seq FROM sessions WHERE id = ?1",
                        [&sid],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?
                    .ok_or_else(|| Error::NotFound(sid.clone()))?;
                Ok(Head {
                    status: SessionStatus::parse(&status)
                        .ok_or_else(|| Error::Storage(format!("unknown status {status:?}")))?,
                    last_seq: last_seq as u64,
                })
            })
            .await
            .map_err(into_log_error)
    }

    fn subscribe(&self, session_id: &str) -> watch::Receiver<u64> {
        let mut tails = match self.tails.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        tails
            .entry(session_id.to_owned())
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

/// The session row fields the projection maintains.
struct Projection {
    status: SessionStatus,
    last_seq: u64,
    usage: Usage,
    outcomes: Vec<OutcomeEvaluation>,
    active_ms: i64,
    running_since: Option<agentd_wire::Timestamp>,
}

pub(crate) fn append_in(
    c: &Connection,
    sid: &str,
    guard: Guard,
) -> Result<(Head, Vec<StoredEvent>)> {
    let row = c
        .query_row(
            "SELECT status, last_seq, usage, active_ms, running_since, outcomes FROM sessions WHERE id = ?1",
            [sid],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                ))
            },
        )
        .optional()
        .map_err(storage)?
        .ok_or_else(|| Error::NotFound(sid.to_owned()))?;
    let mut p = Projection {
        status: SessionStatus::parse(&row.0)
            .ok_or_else(|| Error::Storage(format!("unknown status {:?}", row.0)))?,
        last_seq: row.1 as u64,
        usage: serde_json::from_str(&row.2).map_err(storage)?,
        outcomes: serde_json::from_str(&row.5).map_err(storage)?,
        active_ms: row.3,
        running_since: time::parse_opt(row.4).map_err(storage)?,
    };
    let head = Head {
        status: p.status,
        last_seq: p.last_seq,
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
    let mut stored = Vec::with_capacity(batch.len());
    for NewEvent { id, body, private } in batch {
        p.last_seq += 1;
        project(&mut p, &body, now);
        let private_json = private
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(storage)?;
        stmt.execute(params![
            sid,
            p.last_seq as i64,
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
        stored.push(StoredEvent {
            seq: p.last_seq,
            event: Event {
                id,
                processed_at: now,
                body,
            },
            private,
        });
    }
    c.execute(
        "UPDATE sessions SET status = ?2, last_seq = ?3, usage = ?4, active_ms = ?5, running_since = ?6, updated_at = ?7, outcomes = ?8 WHERE id = ?1",
        params![
            sid,
            p.status.as_str(),
            p.last_seq as i64,
            serde_json::to_string(&p.usage).map_err(storage)?,
            p.active_ms,
            p.running_since.as_ref().map(time::fmt),
            now_s,
            serde_json::to_string(&p.outcomes).map_err(storage)?
        ],
    )
    .map_err(storage)?;
    Ok((
        Head {
            status: p.status,
            last_seq: p.last_seq,
        },
        stored,
    ))
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
