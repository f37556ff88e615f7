//! Thread rows: the catalog side of the threads a coordinator starts. Their logs go through
//! `SessionLog` like a session's; a row is created by the same append that logs its
//! `session.thread_created`.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use agentd_catalog::rules;
use agentd_catalog::{Error, Page, Result, ThreadRow, Threads};
use agentd_wire::thread::{SessionThread, ThreadStats, ThreadTag};
use agentd_wire::{SessionStatus, Timestamp, Usage, ids};

use crate::sessions::get as get_session;
use crate::{Db, PgStore, json, log::now};

const SELECT: &str = "SELECT id, session_id, parent_thread_id, agent_name, agent::text, status, usage::text, active_ms, running_since, created_at, updated_at, archived_at, list_cost FROM threads";

struct Raw {
    row: ThreadRow,
    usage: Usage,
    /// Picodollars.
    cost: u64,
    active_ms: i64,
    running_since: Option<Timestamp>,
    created_at: Timestamp,
    updated_at: Timestamp,
    archived_at: Option<Timestamp>,
}

fn raw(r: &Row) -> Result<Raw> {
    let status: &str = r.get(5);
    let archived_at: Option<Timestamp> = r.get(11);
    Ok(Raw {
        row: ThreadRow {
            id: r.get(0),
            session_id: r.get(1),
            parent_thread_id: r.get(2),
            agent_name: r.get(3),
            agent: json(r.get(4))?,
            status: SessionStatus::parse(status)
                .ok_or_else(|| Error::Storage(format!("unknown status {status:?}")))?,
            archived: archived_at.is_some(),
        },
        usage: json(r.get(6))?,
        cost: u64::try_from(r.get::<_, i64>(12)).map_err(|e| Error::Storage(e.to_string()))?,
        active_ms: r.get(7),
        running_since: r.get(8),
        created_at: r.get(9),
        updated_at: r.get(10),
        archived_at,
    })
}

fn child(r: Raw) -> SessionThread {
    let (active_seconds, duration_seconds) =
        agentd_session::projection::stats(r.active_ms, r.running_since, r.created_at, now());
    let usage = agentd_session::projection::shown_usage(&r.usage, r.cost, Some(active_seconds));
    SessionThread {
        id: r.row.id,
        kind: ThreadTag::SessionThread,
        session_id: r.row.session_id,
        parent_thread_id: Some(r.row.parent_thread_id),
        agent: r.row.agent,
        status: r.row.status,
        usage: Some(usage),
        stats: Some(ThreadStats {
            active_seconds,
            duration_seconds,
        }),
        workflow_run_id: None,
        created_at: r.created_at,
        updated_at: r.updated_at,
        archived_at: r.archived_at,
    }
}

async fn children(c: &impl GenericClient, sid: &str) -> Result<Vec<Raw>> {
    let sql = format!("{SELECT} WHERE session_id = $1 ORDER BY id");
    let rows = c.query(&sql, &[&sid]).await.db()?;
    rows.iter().map(raw).collect()
}

/// The primary thread, drawn from its session (`agentd_catalog::rules::primary_thread`).
async fn primary(
    c: &impl GenericClient,
    ws: &str,
    sid: &str,
    kids: &[Raw],
) -> Result<SessionThread> {
    let s = get_session(c, Some(ws), sid, "").await?;
    let cost: i64 = c
        .query_one("SELECT list_cost FROM sessions WHERE id = $1", &[&sid])
        .await
        .db()?
        .get(0);
    Ok(rules::primary_thread(
        s,
        u64::try_from(cost).map_err(|e| Error::Storage(e.to_string()))?,
        kids.iter().map(|k| (&k.usage, k.cost)),
    ))
}

fn not_found(tid: &str) -> Error {
    Error::NotFound(format!("thread {tid} not found"))
}

/// Child thread `tid`, of session `sid` if one is named.
async fn get_child(c: &impl GenericClient, sid: Option<&str>, tid: &str) -> Result<Raw> {
    let sql = format!("{SELECT} WHERE id = $1 AND ($2::text IS NULL OR session_id = $2)");
    let row = c
        .query_opt(&sql, &[&tid, &sid])
        .await
        .db()?
        .ok_or_else(|| not_found(tid))?;
    raw(&row)
}

#[async_trait]
impl Threads for PgStore {
    async fn list_threads(
        &self,
        ws: &str,
        sid: &str,
        statuses: Vec<SessionStatus>,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<SessionThread>> {
        let c = self.client().await?;
        let kids = children(&c, sid).await?;
        let mut all = vec![primary(&c, ws, sid, &kids).await?];
        all.extend(kids.into_iter().map(child));
        all.retain(|t| statuses.is_empty() || statuses.contains(&t.status));
        // Ids are time-ordered, the primary's (the session's) oldest of all.
        if let Some(p) = &page {
            all.retain(|t| t.id.as_str() > p.as_str());
        }
        all.truncate(limit + 1);
        Ok(Page::of(all, limit, |t| t.id.clone()))
    }

    async fn get_thread(&self, ws: &str, sid: &str, tid: &str) -> Result<SessionThread> {
        let c = self.client().await?;
        if tid == ids::primary_thread(sid) {
            let kids = children(&c, sid).await?;
            return primary(&c, ws, sid, &kids).await;
        }
        get_session(&c, Some(ws), sid, "").await?;
        Ok(child(get_child(&c, Some(sid), tid).await?))
    }

    async fn archive_thread(&self, ws: &str, sid: &str, tid: &str) -> Result<SessionThread> {
        let c = self.client().await?;
        get_session(&c, Some(ws), sid, "").await?;
        if tid == ids::primary_thread(sid) {
            return Err(Error::Invalid(format!(
                "{tid} is the session's primary thread; archive the session instead"
            )));
        }
        let n = c
            .execute(
                "UPDATE threads SET archived_at = COALESCE(archived_at, $3) WHERE id = $1 AND session_id = $2",
                &[&tid, &sid, &now()],
            )
            .await
            .db()?;
        if n == 0 {
            return Err(not_found(tid));
        }
        Ok(child(get_child(&c, Some(sid), tid).await?))
    }

    async fn thread_log(&self, ws: &str, sid: &str, tid: &str) -> Result<String> {
        let c = self.client().await?;
        get_session(&c, Some(ws), sid, "").await?;
        if tid == ids::primary_thread(sid) {
            return Ok(sid.to_owned());
        }
        get_child(&c, Some(sid), tid).await?;
        Ok(tid.to_owned())
    }

    async fn child_threads(&self, sid: &str) -> Result<Vec<ThreadRow>> {
        let kids = children(&self.client().await?, sid).await?;
        Ok(kids.into_iter().map(|r| r.row).collect())
    }

    async fn running_threads(&self) -> Result<Vec<String>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id FROM threads WHERE status = 'running' ORDER BY id",
                &[],
            )
            .await
            .db()?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

impl PgStore {
    /// A child thread, in any workspace: for the harness.
    pub async fn thread(&self, tid: &str) -> Result<ThreadRow> {
        Ok(get_child(&self.client().await?, None, tid).await?.row)
    }
}
