//! Thread rows: the catalog side of the threads a coordinator starts. Their logs go through
//! `SessionLog` like a session's; a row is created by the same append that logs its
//! `session.thread_created`.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use agentd_catalog::rules;
use agentd_catalog::{ThreadRow, Threads};
use agentd_wire::Usage;
use agentd_wire::ids;
use agentd_wire::thread::{SessionThread, ThreadStats, ThreadTag};
use agentd_wire::{SessionStatus, Timestamp};

use crate::sessions::get_in;
use crate::{Error, Page, Result, Store, time};

const SELECT: &str = "SELECT id, session_id, parent_thread_id, agent_name, agent, status, usage, active_ms, running_since, created_at, updated_at, archived_at, list_cost FROM threads";

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

fn raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Raw>> {
    let status: String = r.get(5)?;
    let (agent, usage): (String, String) = (r.get(4)?, r.get(6)?);
    let (id, session_id, parent, name): (String, String, String, String) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    let active_ms: i64 = r.get(7)?;
    let running_since = time::parse_opt(r.get(8)?)?;
    let created_at = time::parse(&r.get::<_, String>(9)?)?;
    let updated_at = time::parse(&r.get::<_, String>(10)?)?;
    let archived_at = time::parse_opt(r.get(11)?)?;
    let cost = r.get::<_, i64>(12)? as u64;
    Ok((|| {
        Ok(Raw {
            row: ThreadRow {
                id,
                session_id,
                parent_thread_id: parent,
                agent_name: name,
                agent: serde_json::from_str(&agent)?,
                status: SessionStatus::parse(&status)
                    .ok_or_else(|| Error::Storage(format!("unknown status {status:?}")))?,
                archived: archived_at.is_some(),
            },
            usage: serde_json::from_str(&usage)?,
            cost,
            active_ms,
            running_since,
            created_at,
            updated_at,
            archived_at,
        })
    })())
}

fn stats(active_ms: i64, running_since: Option<Timestamp>, created_at: Timestamp) -> ThreadStats {
    let (active_seconds, duration_seconds) =
        agentd_session::projection::stats(active_ms, running_since, created_at, time::now());
    ThreadStats {
        active_seconds,
        duration_seconds,
    }
}

fn child(r: Raw) -> SessionThread {
    let stats = stats(r.active_ms, r.running_since, r.created_at);
    let usage =
        agentd_session::projection::shown_usage(&r.usage, r.cost, Some(stats.active_seconds));
    SessionThread {
        id: r.row.id,
        kind: ThreadTag::SessionThread,
        session_id: r.row.session_id,
        parent_thread_id: Some(r.row.parent_thread_id),
        agent: r.row.agent,
        status: r.row.status,
        usage: Some(usage),
        stats: Some(stats),
        workflow_run_id: None,
        created_at: r.created_at,
        updated_at: r.updated_at,
        archived_at: r.archived_at,
    }
}

fn children(c: &Connection, sid: &str) -> Result<Vec<Raw>> {
    let mut st = c.prepare_cached(&format!("{SELECT} WHERE session_id = ?1 ORDER BY id"))?;
    let rows = st.query_map([sid], raw)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(r??);
    }
    Ok(out)
}

/// The primary thread, drawn from its session (`agentd_catalog::rules::primary_thread`).
fn primary(c: &Connection, ws: &str, sid: &str, kids: &[Raw]) -> Result<SessionThread> {
    let s = get_in(c, Some(ws), sid)?;
    let cost: i64 = c.query_row("SELECT list_cost FROM sessions WHERE id = ?1", [sid], |r| {
        r.get(0)
    })?;
    Ok(rules::primary_thread(
        s,
        cost as u64,
        kids.iter().map(|k| (&k.usage, k.cost)),
    ))
}

fn not_found(tid: &str) -> Error {
    Error::NotFound(format!("thread {tid} not found"))
}

fn get_child(c: &Connection, sid: &str, tid: &str) -> Result<Raw> {
    c.query_row(
        &format!("{SELECT} WHERE id = ?1 AND session_id = ?2"),
        params![tid, sid],
        raw,
    )
    .optional()?
    .ok_or_else(|| not_found(tid))?
}

#[async_trait]
impl Threads for Store {
    async fn list_threads(
        &self,
        ws: &str,
        sid: &str,
        statuses: Vec<SessionStatus>,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<SessionThread>> {
        let (ws, sid) = (ws.to_owned(), sid.to_owned());
        self.db
            .read(move |c| {
                let kids = children(c, &sid)?;
                let mut all = vec![primary(c, &ws, &sid, &kids)?];
                all.extend(kids.into_iter().map(child));
                all.retain(|t| statuses.is_empty() || statuses.contains(&t.status));
                // Ids are time-ordered, the primary's (the session's) oldest of all.
                if let Some(p) = &page {
                    all.retain(|t| t.id.as_str() > p.as_str());
                }
                all.truncate(limit + 1);
                Ok(Page::of(all, limit, |t| t.id.clone()))
            })
            .await
    }

    async fn get_thread(&self, ws: &str, sid: &str, tid: &str) -> Result<SessionThread> {
        let (ws, sid, tid) = (ws.to_owned(), sid.to_owned(), tid.to_owned());
        self.db
            .read(move |c| {
                if tid == ids::primary_thread(&sid) {
                    let kids = children(c, &sid)?;
                    return primary(c, &ws, &sid, &kids);
                }
                get_in(c, Some(&ws), &sid)?;
                Ok(child(get_child(c, &sid, &tid)?))
            })
            .await
    }

    async fn archive_thread(&self, ws: &str, sid: &str, tid: &str) -> Result<SessionThread> {
        let (ws, sid, tid) = (ws.to_owned(), sid.to_owned(), tid.to_owned());
        self.db
            .write(move |c| {
                get_in(c, Some(&ws), &sid)?;
                if tid == ids::primary_thread(&sid) {
                    return Err(Error::Invalid(format!(
                        "{tid} is the session's primary thread; archive the session instead"
                    )));
                }
                get_child(c, &sid, &tid)?;
                c.execute(
                    "UPDATE threads SET archived_at = COALESCE(archived_at, ?2) WHERE id = ?1",
                    params![tid, time::fmt(&time::now())],
                )?;
                Ok(child(get_child(c, &sid, &tid)?))
            })
            .await
    }

    async fn thread_log(&self, ws: &str, sid: &str, tid: &str) -> Result<String> {
        let (ws, sid, tid) = (ws.to_owned(), sid.to_owned(), tid.to_owned());
        self.db
            .read(move |c| {
                get_in(c, Some(&ws), &sid)?;
                if tid == ids::primary_thread(&sid) {
                    return Ok(sid);
                }
                get_child(c, &sid, &tid)?;
                Ok(tid)
            })
            .await
    }

    async fn child_threads(&self, sid: &str) -> Result<Vec<ThreadRow>> {
        let sid = sid.to_owned();
        self.db
            .read(move |c| Ok(children(c, &sid)?.into_iter().map(|r| r.row).collect()))
            .await
    }

    async fn running_threads(&self) -> Result<Vec<String>> {
        self.db
            .read(|c| {
                let mut st =
                    c.prepare("SELECT id FROM threads WHERE status = 'running' ORDER BY id")?;
                let ids = st.query_map([], |r| r.get(0))?;
                Ok(ids.collect::<rusqlite::Result<Vec<String>>>()?)
            })
            .await
    }
}

impl Store {
    /// A child thread, in any workspace: for the harness.
    pub async fn thread(&self, tid: &str) -> Result<ThreadRow> {
        let tid = tid.to_owned();
        self.db
            .read(move |c| {
                let r = c
                    .query_row(&format!("{SELECT} WHERE id = ?1"), [&tid], raw)
                    .optional()?
                    .ok_or_else(|| not_found(&tid))??;
                Ok(r.row)
            })
            .await
    }
}
