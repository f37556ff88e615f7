//! `SessionLog` on SQLite.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

use agentd_session::append::{self, LoadedLog, LogKind, NewThread, SavedLog};
use agentd_session::projection::Projection;
use agentd_session::{Error, Guard, Head, Private, Refusal, Result, SessionLog, StoredEvent};
use agentd_wire::{Event, SessionStatus, Usage};

use crate::{Store, time};

#[async_trait]
impl SessionLog for Store {
    async fn append(&self, log_id: &str, guard: Guard) -> Result<(Head, Vec<StoredEvent>)> {
        let lid = log_id.to_owned();
        // Leases live in this process, so their holder is known before the transaction.
        let holder = self.held.holder(log_id);
        let guard: Guard = Box::new(move |head: &Head| guard(&Head { holder, ..*head }));
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
        let lid = log_id.to_owned();
        self.db
            .read(move |c| read_in(c, &lid, after, limit))
            .await
            .map_err(into_log_error)
    }

    async fn head(&self, log_id: &str) -> Result<Head> {
        let lid = log_id.to_owned();
        self.db
            .read(move |c| Ok(load(c, &lid).map_err(crate::Error::Log)?.projection.head()))
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
    pub(crate) fn notify(&self, log_id: &str, tail: u64) {
        let mut tails = match self.tails.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        if let Some(tx) = tails.get(log_id) {
            if tx.receiver_count() == 0 {
                tails.remove(log_id);
            } else {
                tx.send_replace(tail);
            }
        }
    }
}

/// The row of `log_id` the projection lives in: the session's own, or a worker thread's.
fn load(c: &Connection, log_id: &str) -> Result<LoadedLog> {
    let sql = match LogKind::of(log_id) {
        LogKind::Session => {
            "SELECT status, last_seq, usage, active_ms, running_since, outcomes, id, list_cost FROM sessions WHERE id = ?1"
        }
        LogKind::Thread => {
            "SELECT status, last_seq, usage, active_ms, running_since, '[]', session_id, list_cost FROM threads WHERE id = ?1"
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
                r.get::<_, i64>(7)?,
            ))
        })
        .optional()
        .map_err(sqlite)?
        .ok_or_else(|| Error::NotFound(log_id.to_owned()))?;
    Ok(LoadedLog {
        log_id: log_id.to_owned(),
        session_id: row.6,
        projection: Projection {
            status: SessionStatus::parse(&row.0)
                .ok_or_else(|| Error::Storage(format!("unknown status {:?}", row.0)))?,
            last_seq: row.1 as u64,
            usage: serde_json::from_str(&row.2).map_err(storage)?,
            cost: row.7 as u64,
            outcomes: serde_json::from_str(&row.5).map_err(storage)?,
            active_ms: row.3,
            running_since: time::parse_opt(row.4).map_err(storage)?,
        },
    })
}

fn save(c: &Connection, log: &SavedLog, now: &str) -> Result<()> {
    let p = &log.projection;
    let usage = serde_json::to_string(&p.usage).map_err(storage)?;
    let since = p.running_since.as_ref().map(time::fmt);
    // Picodollars fit an i64 up to about nine million dollars a session.
    let cost = i64::try_from(p.cost).map_err(storage)?;
    let id = &log.log_id;
    match (LogKind::of(id), log.appended) {
        // Only its threads' tokens moved: the session itself did nothing.
        (LogKind::Session, false) => c.execute(
            "UPDATE sessions SET usage = ?2, list_cost = ?3 WHERE id = ?1",
            params![id, usage, cost],
        ),
        (LogKind::Session, true) => c.execute(
            "UPDATE sessions SET status = ?2, last_seq = ?3, usage = ?4, active_ms = ?5, running_since = ?6, updated_at = ?7, outcomes = ?8, list_cost = ?9 WHERE id = ?1",
            params![
                id,
                p.status.as_str(),
                p.last_seq as i64,
                usage,
                p.active_ms,
                since,
                now,
                serde_json::to_string(&p.outcomes).map_err(storage)?,
                cost
            ],
        ),
        (LogKind::Thread, _) => c.execute(
            "UPDATE threads SET status = ?2, last_seq = ?3, usage = ?4, active_ms = ?5, running_since = ?6, updated_at = ?7, list_cost = ?8 WHERE id = ?1",
            params![id, p.status.as_str(), p.last_seq as i64, usage, p.active_ms, since, now, cost],
        ),
    }
    .map_err(sqlite)?;
    Ok(())
}

/// Append to `log_id` what the guard allows, and the events it addresses to other logs of the
/// same session; return the head of `log_id` and what was stored there. `touched` collects
/// every log whose tail moved, for the caller to notify.
pub(crate) fn append_in(
    c: &Connection,
    log_id: &str,
    guard: Guard,
    touched: &mut Vec<(String, u64)>,
) -> Result<(Head, Vec<StoredEvent>)> {
    let target = load(c, log_id)?;
    let head = target.projection.head();
    let batch = guard(&head)?;
    if batch.is_empty() {
        return Ok((head, vec![]));
    }
    let mut loaded = vec![target];
    loop {
        let missing = append::missing(&loaded, &batch);
        if missing.is_empty() {
            break;
        }
        for id in missing {
            loaded.push(load(c, &id)?);
        }
    }
    let now = time::now();
    let now_s = time::fmt(&now);
    let plan = append::plan(loaded, batch, now)?;
    for t in &plan.threads {
        create_thread(c, t, &now_s)?;
    }
    let mut stmt = c
        .prepare_cached(
            "INSERT INTO events (session_id, seq, id, type, processed_at, body, private) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(sqlite)?;
    for (log, e) in &plan.events {
        let body = &e.event.body;
        let private_json = e
            .private
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(storage)?;
        stmt.execute(params![
            log,
            e.seq as i64,
            e.event.id,
            body.type_name(),
            now_s,
            serde_json::to_string(body).map_err(storage)?,
            private_json
        ])
        .map_err(|err| answered_twice(err, body.type_name()))?;
    }
    for log in &plan.logs {
        save(c, log, &now_s)?;
        if log.appended || log.log_id == log_id {
            touched.push((log.log_id.clone(), log.projection.last_seq));
        }
    }
    let stored = plan.stored().cloned().collect();
    Ok((plan.head, stored))
}

fn create_thread(c: &Connection, t: &NewThread, now: &str) -> Result<()> {
    c.execute(
        "INSERT INTO threads (id, session_id, parent_thread_id, agent_name, agent, status, usage, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?8, ?6, ?7, ?7)",
        params![
            t.id,
            t.session_id,
            t.parent_thread_id,
            t.agent_name,
            serde_json::to_string(&t.agent).map_err(storage)?,
            serde_json::to_string(&Usage::default()).map_err(storage)?,
            now,
            Projection::default().status.as_str()
        ],
    )
    .map_err(sqlite)?;
    Ok(())
}

pub(crate) fn read_in(
    c: &Connection,
    log_id: &str,
    after: u64,
    limit: usize,
) -> crate::Result<Vec<StoredEvent>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, id, processed_at, body, private FROM events WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![log_id, after as i64, limit as i64], row_to_event)?;
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

/// A second answer to a tool call is the caller's mistake, not a storage failure; any other
/// constraint (a position or an event id used twice) is a bug below the caller.
fn answered_twice(err: rusqlite::Error, kind: &str) -> Error {
    // SQLite names the violated index in the message: the answer indexes of migration 0006.
    let answer_index = err.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
        && err.to_string().contains("index 'events_one_");
    if answer_index {
        Error::Refused(Refusal::Invalid(format!(
            "{kind}: that tool call was already answered"
        )))
    } else {
        sqlite(err)
    }
}

fn storage(e: impl std::fmt::Display) -> Error {
    Error::Storage(e.to_string())
}

/// A failed statement: a full disk is a pause the caller may wait out, anything else a fault.
fn sqlite(e: rusqlite::Error) -> Error {
    into_log_error(e.into())
}

fn into_log_error(e: crate::Error) -> Error {
    match e {
        crate::Error::Log(e) => e,
        crate::Error::Unavailable(m) => Error::Unavailable(m),
        other => Error::Storage(other.to_string()),
    }
}
