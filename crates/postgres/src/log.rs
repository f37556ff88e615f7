//! `SessionLog` on PostgreSQL.
//!
//! An append is one transaction that first locks its session's row (`SELECT … FOR UPDATE`):
//! appends to the logs of one session are serialised, which keeps positions gapless without a
//! sequence, and since every append that touches a session's logs takes that row first, two
//! appends can never wait on each other's thread rows. (An append to a worker thread locks
//! its session's row anyway: the thread's tokens count there.)

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::watch;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use agentd_session::append::{self, LoadedLog, LogKind, NewThread, Plan, SavedLog};
use agentd_session::projection::Projection;
use agentd_session::{
    Error, Guard, Head, NewEvent, Private, Refusal, Result, SessionLog, StoredEvent,
};
use agentd_wire::{Event, SessionStatus, Usage};

use crate::{PgStore, checkout, notify, pg, storage};

#[async_trait]
impl SessionLog for PgStore {
    async fn append(&self, log_id: &str, guard: Guard) -> Result<(Head, Vec<StoredEvent>)> {
        let mut client = self.pool.get().await.map_err(checkout)?;
        let tx = client.transaction().await.map_err(pg)?;
        let (out, touched) = append_in(&tx, log_id, guard).await?;
        tx.commit().await.map_err(pg)?;
        self.tell(touched);
        Ok(out)
    }

    async fn read(&self, log_id: &str, after: u64, limit: usize) -> Result<Vec<StoredEvent>> {
        let client = self.pool.get().await.map_err(checkout)?;
        let stmt = client
            .prepare_cached(
                "SELECT seq, id, processed_at, body::text, private::text FROM events WHERE log_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .await
            .map_err(pg)?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(&stmt, &[&log_id, &after, &limit])
            .await
            .map_err(pg)?;
        rows.iter().map(row_to_event).collect()
    }

    async fn head(&self, log_id: &str) -> Result<Head> {
        let client = self.pool.get().await.map_err(checkout)?;
        Ok(load(&client, log_id, false).await?.projection.head())
    }

    fn subscribe(&self, log_id: &str) -> watch::Receiver<u64> {
        self.tails.subscribe(log_id)
    }
}

/// The last position of `log_id`, as of the last commit.
pub(crate) async fn tail(pool: &Pool, log_id: &str) -> Result<u64> {
    let client = pool.get().await.map_err(checkout)?;
    Ok(load(&client, log_id, false).await?.projection.last_seq)
}

/// Now, at the precision `timestamptz` keeps, so an event reads back exactly as its append
/// returned it.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Append to `log_id` what the guard allows, and the events it addresses to other logs of the
/// same session; return the head of `log_id`, what was stored there, and every log whose tail
/// moved, for the caller to notify after the commit.
pub(crate) async fn append_in(
    c: &impl GenericClient,
    log_id: &str,
    guard: Guard,
) -> Result<((Head, Vec<StoredEvent>), Vec<(String, u64)>)> {
    lock_session(c, log_id).await?;
    let target = load(c, log_id, true).await?;
    let mut head = target.projection.head();
    head.holder = holder(c, log_id).await?;
    let batch = guard(&head)?;
    if batch.is_empty() {
        return Ok(((head, vec![]), vec![]));
    }
    let loaded = load_missing(c, vec![target], &batch).await?;
    let now = now();
    let plan = append::plan(loaded, batch, now)?;
    write(c, &plan, now).await?;
    let touched: Vec<(String, u64)> = plan
        .logs
        .iter()
        .filter(|l| l.appended || l.log_id == log_id)
        .map(|l| (l.log_id.clone(), l.projection.last_seq))
        .collect();
    notify::send(c, &touched).await?;
    let stored = plan.stored().cloned().collect();
    Ok(((plan.head, stored), touched))
}

/// Who holds a live lease on `log_id`, for the guard to fence a harness that lost it. Read
/// with the session's row locked, so no append by the new holder can land between this and
/// the commit.
async fn holder(c: &impl GenericClient, log_id: &str) -> Result<Option<u64>> {
    let stmt = c
        .prepare_cached("SELECT owner FROM leases WHERE log_id = $1 AND expires_at > now()")
        .await
        .map_err(pg)?;
    let row = c.query_opt(&stmt, &[&log_id]).await.map_err(pg)?;
    Ok(row.map(|r| agentd_session::lease::key(r.get(0))))
}

/// Lock the row of the session `log_id` belongs to, before any other row of the append.
async fn lock_session(c: &impl GenericClient, log_id: &str) -> Result<()> {
    let sql = match LogKind::of(log_id) {
        LogKind::Session => "SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE",
        LogKind::Thread => {
            "SELECT 1 FROM sessions WHERE id = (SELECT session_id FROM threads WHERE id = $1) FOR UPDATE"
        }
    };
    c.execute(sql, &[&log_id]).await.map_err(pg)?;
    Ok(())
}

/// Load, and lock, the rows `append::missing` names until it names none.
async fn load_missing(
    c: &impl GenericClient,
    mut loaded: Vec<LoadedLog>,
    batch: &[NewEvent],
) -> Result<Vec<LoadedLog>> {
    loop {
        let missing = append::missing(&loaded, batch);
        if missing.is_empty() {
            return Ok(loaded);
        }
        for id in missing {
            loaded.push(load(c, &id, true).await?);
        }
    }
}

/// The row of `log_id` the projection lives in: the session's own, or a worker thread's;
/// locked until the transaction ends if `lock`.
async fn load(c: &impl GenericClient, log_id: &str, lock: bool) -> Result<LoadedLog> {
    let select = match LogKind::of(log_id) {
        LogKind::Session => {
            "SELECT status, last_seq, usage, active_ms, running_since, outcomes, id, list_cost FROM sessions WHERE id = $1"
        }
        LogKind::Thread => {
            "SELECT status, last_seq, usage, active_ms, running_since, '[]'::jsonb, session_id, list_cost FROM threads WHERE id = $1"
        }
    };
    let sql = if lock {
        format!("{select} FOR UPDATE")
    } else {
        select.to_owned()
    };
    let stmt = c.prepare_cached(&sql).await.map_err(pg)?;
    let row = c
        .query_opt(&stmt, &[&log_id])
        .await
        .map_err(pg)?
        .ok_or_else(|| Error::NotFound(log_id.to_owned()))?;
    let status: String = row.try_get(0).map_err(pg)?;
    let projection = Projection {
        status: SessionStatus::parse(&status)
            .ok_or_else(|| Error::Storage(format!("unknown status {status:?}")))?,
        last_seq: u64::try_from(row.try_get::<_, i64>(1).map_err(pg)?).map_err(storage)?,
        usage: serde_json::from_value(row.try_get(2).map_err(pg)?).map_err(storage)?,
        cost: u64::try_from(row.try_get::<_, i64>(7).map_err(pg)?).map_err(storage)?,
        active_ms: row.try_get(3).map_err(pg)?,
        running_since: row.try_get(4).map_err(pg)?,
        outcomes: serde_json::from_value(row.try_get(5).map_err(pg)?).map_err(storage)?,
    };
    Ok(LoadedLog {
        log_id: log_id.to_owned(),
        session_id: row.try_get(6).map_err(pg)?,
        projection,
    })
}

/// Write the plan: thread rows, then events, then projections.
async fn write(c: &impl GenericClient, plan: &Plan, now: DateTime<Utc>) -> Result<()> {
    for t in &plan.threads {
        create_thread(c, t, now).await?;
    }
    let stmt = c
        .prepare_cached(
            "INSERT INTO events (log_id, seq, id, type, processed_at, body, private) VALUES ($1, $2, $3, $4, $5, $6::text::json, $7::text::json)",
        )
        .await
        .map_err(pg)?;
    for (log, e) in &plan.events {
        let kind = e.event.body.type_name();
        let seq = i64::try_from(e.seq).map_err(storage)?;
        // The same text SQLite stores: the wire JSON as serde writes it.
        let body = serde_json::to_string(&e.event.body).map_err(storage)?;
        let private = e
            .private
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(storage)?;
        let params: [&(dyn ToSql + Sync); 7] =
            [log, &seq, &e.event.id, &kind, &now, &body, &private];
        c.execute(&stmt, &params)
            .await
            .map_err(|err| answered_twice(err, kind))?;
    }
    for log in &plan.logs {
        save(c, log, now).await?;
    }
    Ok(())
}

/// A second answer to a tool call is the caller's mistake, not a storage failure.
fn answered_twice(err: tokio_postgres::Error, kind: &str) -> Error {
    let answer_index = err.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::UNIQUE_VIOLATION
            && matches!(
                db.constraint(),
                Some(
                    "events_one_custom_tool_result"
                        | "events_one_tool_confirmation"
                        | "events_one_tool_result"
                )
            )
    });
    if answer_index {
        Error::Refused(Refusal::Invalid(format!(
            "{kind}: that tool call was already answered"
        )))
    } else {
        pg(err)
    }
}

async fn save(c: &impl GenericClient, log: &SavedLog, now: DateTime<Utc>) -> Result<()> {
    let p = &log.projection;
    let usage = serde_json::to_value(&p.usage).map_err(storage)?;
    let cost = i64::try_from(p.cost).map_err(storage)?;
    let id = &log.log_id;
    let last_seq = i64::try_from(p.last_seq).map_err(storage)?;
    let status = p.status.as_str();
    let outcomes = serde_json::to_value(&p.outcomes).map_err(storage)?;
    let (sql, params): (&str, Vec<&(dyn ToSql + Sync)>) = match (LogKind::of(id), log.appended) {
        // Only its threads' tokens moved: the session itself did nothing.
        (LogKind::Session, false) => (
            "UPDATE sessions SET usage = $2, list_cost = $3 WHERE id = $1",
            vec![id, &usage, &cost],
        ),
        (LogKind::Session, true) => (
            "UPDATE sessions SET status = $2, last_seq = $3, usage = $4, active_ms = $5, running_since = $6, updated_at = $7, outcomes = $8, list_cost = $9 WHERE id = $1",
            vec![
                id,
                &status,
                &last_seq,
                &usage,
                &p.active_ms,
                &p.running_since,
                &now,
                &outcomes,
                &cost,
            ],
        ),
        (LogKind::Thread, _) => (
            "UPDATE threads SET status = $2, last_seq = $3, usage = $4, active_ms = $5, running_since = $6, updated_at = $7, list_cost = $8 WHERE id = $1",
            vec![
                id,
                &status,
                &last_seq,
                &usage,
                &p.active_ms,
                &p.running_since,
                &now,
                &cost,
            ],
        ),
    };
    c.execute(sql, &params).await.map_err(pg)?;
    Ok(())
}

async fn create_thread(c: &impl GenericClient, t: &NewThread, now: DateTime<Utc>) -> Result<()> {
    let agent = serde_json::to_value(&t.agent).map_err(storage)?;
    let usage = serde_json::to_value(Usage::default()).map_err(storage)?;
    let status = Projection::default().status.as_str();
    c.execute(
        "INSERT INTO threads (id, session_id, parent_thread_id, agent_name, agent, status, usage, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        &[&t.id, &t.session_id, &t.parent_thread_id, &t.agent_name, &agent, &status, &usage, &now],
    )
    .await
    .map_err(pg)?;
    Ok(())
}

/// Decode one `events` row selected as `seq, id, processed_at, body, private`.
pub(crate) fn row_to_event(r: &Row) -> Result<StoredEvent> {
    let seq: i64 = r.try_get(0).map_err(pg)?;
    let body: String = r.try_get(3).map_err(pg)?;
    let private: Option<String> = r.try_get(4).map_err(pg)?;
    Ok(StoredEvent {
        seq: u64::try_from(seq).map_err(storage)?,
        event: Event {
            id: r.try_get(1).map_err(pg)?,
            processed_at: r.try_get(2).map_err(pg)?,
            body: serde_json::from_str(&body).map_err(storage)?,
        },
        private: private
            .map(|p| serde_json::from_str::<Private>(&p))
            .transpose()
            .map_err(storage)?,
    })
}
