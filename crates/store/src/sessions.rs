//! Session rows and event queries. Appends go through `SessionLog` (see `log.rs`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use agentd_catalog::cursor;
use agentd_catalog::{EventFilter, NewSession, Order, SessionFilter, Sessions};
use agentd_session::projection::{self, Projection};
use agentd_session::{Guard, StoredEvent};
use agentd_wire::ids::{self, Kind};
use agentd_wire::resource::Resource;
use agentd_wire::session::{SessionTag, Stats};
use agentd_wire::{Session, SessionStatus};

use crate::{Error, Page, Result, Store, log, time};

const SELECT: &str = "SELECT id, agent, environment_id, status, title, metadata, usage, active_ms, running_since, created_at, updated_at, archived_at, outcomes, list_cost, resources, vault_ids FROM sessions";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Session>> {
    let running_since = time::parse_opt(r.get(8)?)?;
    let created_at = time::parse(&r.get::<_, String>(9)?)?;
    let active_ms: i64 = r.get(7)?;
    let (active_seconds, duration_seconds) =
        projection::stats(active_ms, running_since, created_at, time::now());
    let status: String = r.get(3)?;
    let (agent, metadata, usage): (String, String, String) = (r.get(1)?, r.get(5)?, r.get(6)?);
    let id: String = r.get(0)?;
    let environment_id: String = r.get(2)?;
    let title: Option<String> = r.get(4)?;
    let updated_at = time::parse(&r.get::<_, String>(10)?)?;
    let archived_at = time::parse_opt(r.get(11)?)?;
    let outcomes: String = r.get(12)?;
    let cost: i64 = r.get(13)?;
    let resources: String = r.get(14)?;
    let vault_ids: String = r.get(15)?;
    Ok((|| {
        let usage: agentd_wire::Usage = serde_json::from_str(&usage)?;
        let usage = projection::shown_usage(&usage, cost as u64, Some(active_seconds));
        Ok(Session {
            id,
            kind: SessionTag::Session,
            agent: serde_json::from_str(&agent)?,
            environment_id,
            status: SessionStatus::parse(&status)
                .ok_or_else(|| Error::Storage(format!("unknown status {status:?}")))?,
            title,
            metadata: serde_json::from_str(&metadata)?,
            usage,
            stats: Stats {
                active_seconds,
                duration_seconds,
            },
            resources: serde_json::from_str(&resources)?,
            vault_ids: serde_json::from_str(&vault_ids)?,
            outcome_evaluations: serde_json::from_str(&outcomes)?,
            budget: None,
            deployment_id: None,
            created_at,
            updated_at,
            archived_at,
        })
    })())
}

pub(crate) fn get_in(c: &Connection, ws: Option<&str>, id: &str) -> Result<Session> {
    let sql = format!("{SELECT} WHERE id = ?1 AND (?2 IS NULL OR workspace_id = ?2)");
    c.query_row(&sql, params![id, ws], row)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("session {id} not found")))?
}

#[async_trait]
impl Sessions for Store {
    async fn create_session(&self, ws: &str, s: NewSession, initial: Guard) -> Result<Session> {
        let ws = ws.to_owned();
        self.db
            .write(move |c| {
                let env_archived: Option<Option<String>> = c
                    .query_row(
                        "SELECT archived_at FROM environments WHERE workspace_id = ?1 AND id = ?2",
                        params![ws, s.environment_id],
                        |r| r.get(0),
                    )
                    .optional()?;
                match env_archived {
                    None => {
                        return Err(Error::NotFound(format!(
                            "environment {} not found",
                            s.environment_id
                        )));
                    }
                    Some(Some(_)) => {
                        return Err(Error::Conflict(format!(
                            "environment {} is archived; sessions cannot start in it",
                            s.environment_id
                        )));
                    }
                    Some(None) => {}
                }
                for (i, v) in s.vault_ids.iter().enumerate() {
                    let archived: Option<Option<String>> = c
                        .query_row(
                            "SELECT archived_at FROM vaults WHERE workspace_id = ?1 AND id = ?2",
                            params![ws, v],
                            |r| r.get(0),
                        )
                        .optional()?;
                    agentd_catalog::rules::session_vault(i, v, archived.map(|a| a.is_some()))?;
                }
                let id = ids::new(Kind::Session);
                let now = time::fmt(&time::now());
                c.execute(
                    "INSERT INTO sessions (id, workspace_id, agent_id, agent_version, agent, environment_id, status, title, metadata, usage, created_at, updated_at, vault_ids)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?11, ?7, ?8, ?9, ?10, ?10, ?12)",
                    params![
                        id,
                        ws,
                        s.agent.id,
                        s.agent.version,
                        serde_json::to_string(&s.agent)?,
                        s.environment_id,
                        s.title,
                        serde_json::to_string(&s.metadata)?,
                        serde_json::to_string(&agentd_wire::Usage::default())?,
                        now,
                        Projection::default().status.as_str(),
                        serde_json::to_string(&s.vault_ids)?
                    ],
                )?;
                if !s.resources.is_empty() {
                    c.execute(
                        "UPDATE sessions SET resources = ?2 WHERE id = ?1",
                        params![id, serde_json::to_string(&s.resources)?],
                    )?;
                }
                for (rid, sealed) in &s.sealed_tokens {
                    put_token(c, &id, rid, sealed)?;
                }
                log::append_in(c, &id, initial, &mut Vec::new())?;
                get_in(c, Some(&ws), &id)
            })
            .await
    }

    async fn get_session(&self, ws: &str, id: &str) -> Result<Session> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db.read(move |c| get_in(c, Some(&ws), &id)).await
    }

    async fn update_session(
        &self,
        ws: &str,
        id: &str,
        title: Option<Option<String>>,
        metadata: Option<BTreeMap<String, Option<String>>>,
    ) -> Result<Session> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        let (session, touched) = self
            .db
            .write(move |c| {
                let mut touched = Vec::new();
                let before = get_in(c, Some(&ws), &id)?;
                let Some(change) = agentd_session::catalog::session_update(
                    &before.title,
                    &before.metadata,
                    title,
                    metadata,
                ) else {
                    return Ok((before, touched));
                };
                c.execute(
                    "UPDATE sessions SET title = ?2, metadata = ?3 WHERE id = ?1",
                    params![id, change.title, serde_json::to_string(&change.metadata)?],
                )?;
                let ev = change.event;
                log::append_in(c, &id, agentd_session::events(vec![ev]), &mut touched)?;
                Ok((get_in(c, Some(&ws), &id)?, touched))
            })
            .await?;
        // A stream open on the session shows the change now, not at the next append.
        for (log, tail) in touched {
            self.notify(&log, tail);
        }
        Ok(session)
    }

    async fn archive_session(&self, ws: &str, id: &str) -> Result<Session> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db
            .write(move |c| {
                get_in(c, Some(&ws), &id)?;
                c.execute(
                    "UPDATE sessions SET archived_at = COALESCE(archived_at, ?2) WHERE id = ?1",
                    params![id, time::fmt(&time::now())],
                )?;
                get_in(c, Some(&ws), &id)
            })
            .await
    }

    async fn add_session_resource(
        &self,
        ws: &str,
        id: &str,
        r: Resource,
        sealed_token: Option<Vec<u8>>,
    ) -> Result<Session> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db
            .write(move |c| {
                let mut s = get_in(c, Some(&ws), &id)?;
                if let Some(sealed) = &sealed_token {
                    put_token(c, &id, r.id(), sealed)?;
                }
                agentd_catalog::resources::add(&mut s.resources, r)?;
                c.execute(
                    "UPDATE sessions SET resources = ?2, updated_at = ?3 WHERE id = ?1",
                    params![
                        id,
                        serde_json::to_string(&s.resources)?,
                        time::fmt(&time::now())
                    ],
                )?;
                get_in(c, Some(&ws), &id)
            })
            .await
    }

    async fn set_resource_token(
        &self,
        ws: &str,
        id: &str,
        rid: &str,
        sealed_token: Vec<u8>,
    ) -> Result<Resource> {
        let (ws, id, rid) = (ws.to_owned(), id.to_owned(), rid.to_owned());
        self.db
            .write(move |c| {
                let mut s = get_in(c, Some(&ws), &id)?;
                let now = time::now();
                let r = agentd_catalog::resources::retoken(&mut s.resources, &rid, now)?;
                put_token(c, &id, &rid, &sealed_token)?;
                c.execute(
                    "UPDATE sessions SET resources = ?2, updated_at = ?3 WHERE id = ?1",
                    params![id, serde_json::to_string(&s.resources)?, time::fmt(&now)],
                )?;
                Ok(r)
            })
            .await
    }

    async fn delete_session_resource(&self, ws: &str, id: &str, rid: &str) -> Result<Resource> {
        let (ws, id, rid) = (ws.to_owned(), id.to_owned(), rid.to_owned());
        self.db
            .write(move |c| {
                let mut s = get_in(c, Some(&ws), &id)?;
                let gone = agentd_catalog::resources::remove(&mut s.resources, &rid)?;
                c.execute(
                    "DELETE FROM resource_secrets WHERE resource_id = ?1",
                    [&rid],
                )?;
                c.execute(
                    "UPDATE sessions SET resources = ?2, updated_at = ?3 WHERE id = ?1",
                    params![
                        id,
                        serde_json::to_string(&s.resources)?,
                        time::fmt(&time::now())
                    ],
                )?;
                Ok(gone)
            })
            .await
    }

    async fn delete_session(&self, ws: &str, id: &str) -> Result<()> {
        let (ws, sid) = (ws.to_owned(), id.to_owned());
        let threads = self
            .db
            .write(move |c| {
                get_in(c, Some(&ws), &sid)?;
                let threads: Vec<String> = c
                    .prepare("SELECT id FROM threads WHERE session_id = ?1")?
                    .query_map([&sid], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                for t in &threads {
                    c.execute("DELETE FROM events WHERE session_id = ?1", [t])?;
                }
                c.execute("DELETE FROM threads WHERE session_id = ?1", [&sid])?;
                c.execute("DELETE FROM events WHERE session_id = ?1", [&sid])?;
                c.execute("DELETE FROM work_items WHERE session_id = ?1", [&sid])?;
                c.execute("DELETE FROM resource_secrets WHERE session_id = ?1", [&sid])?;
                c.execute("DELETE FROM sessions WHERE id = ?1", [&sid])?;
                Ok(threads)
            })
            .await?;
        for t in threads {
            self.notify(&t, agentd_session::DELETED);
        }
        self.notify(id, agentd_session::DELETED);
        Ok(())
    }

    async fn running_sessions(&self) -> Result<Vec<String>> {
        self.db
            .read(|c| {
                let mut st =
                    c.prepare("SELECT id FROM sessions WHERE status = 'running' ORDER BY id")?;
                let ids = st.query_map([], |r| r.get(0))?;
                Ok(ids.collect::<rusqlite::Result<Vec<String>>>()?)
            })
            .await
    }

    async fn list_sessions(&self, ws: &str, f: SessionFilter) -> Result<Page<Session>> {
        let ws = ws.to_owned();
        self.db
            .read(move |c| {
                let (cmp, dir) = match f.order {
                    Order::Asc => (">", "ASC"),
                    Order::Desc => ("<", "DESC"),
                };
                let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
                let sql = format!(
                    "{SELECT} WHERE workspace_id = ?1 AND (?2 OR archived_at IS NULL)
                     AND (?3 IS NULL OR agent_id = ?3) AND (?4 IS NULL OR agent_version = ?4)
                     AND (?5 IS NULL OR created_at > ?5) AND (?6 IS NULL OR created_at >= ?6)
                     AND (?7 IS NULL OR created_at < ?7) AND (?8 IS NULL OR created_at <= ?8)
                     AND (?9 = '' OR instr(?9, ',' || status || ',') > 0)
                     AND (?10 IS NULL OR id {cmp} ?10)
                     ORDER BY id {dir} LIMIT ?11"
                );
                let status_set = if statuses.is_empty() {
                    String::new()
                } else {
                    format!(",{},", statuses.join(","))
                };
                let mut st = c.prepare_cached(&sql)?;
                let rows = st.query_map(
                    params![
                        ws,
                        f.include_archived,
                        f.agent_id,
                        f.agent_version,
                        f.created_at_gt.as_ref().map(time::fmt),
                        f.created_at_gte.as_ref().map(time::fmt),
                        f.created_at_lt.as_ref().map(time::fmt),
                        f.created_at_lte.as_ref().map(time::fmt),
                        status_set,
                        f.page,
                        (f.limit + 1) as i64
                    ],
                    row,
                )?;
                let mut out = Vec::new();
                for r in rows {
                    out.push(r??);
                }
                Ok(Page::of(out, f.limit, |s| s.id.clone()))
            })
            .await
    }

    async fn list_log_events(
        &self,
        ws: &str,
        sid: &str,
        log_id: &str,
        f: EventFilter,
    ) -> Result<Page<StoredEvent>> {
        let (ws, sid, log_id) = (ws.to_owned(), sid.to_owned(), log_id.to_owned());
        let cursor =
            cursor::position(f.page.as_deref())?.map(|seq| i64::try_from(seq).unwrap_or(i64::MAX));
        self.db
            .read(move |c| {
                get_in(c, Some(&ws), &sid)?;
                let (cmp, dir) = match f.order {
                    Order::Asc => (">", "ASC"),
                    Order::Desc => ("<", "DESC"),
                };
                let types = if f.types.is_empty() {
                    String::new()
                } else {
                    format!(",{},", f.types.join(","))
                };
                let sql = format!(
                    "SELECT seq, id, processed_at, body, private FROM events WHERE session_id = ?1
                     AND (?2 IS NULL OR seq {cmp} ?2)
                     AND type NOT LIKE '{internal}%'
                     AND (?3 = '' OR instr(?3, ',' || type || ',') > 0)
                     AND (?4 IS NULL OR processed_at > ?4) AND (?5 IS NULL OR processed_at >= ?5)
                     AND (?6 IS NULL OR processed_at < ?6) AND (?7 IS NULL OR processed_at <= ?7)
                     ORDER BY seq {dir} LIMIT ?8",
                    // Internal events are never shown; the prefix is what marks them.
                    internal = agentd_wire::event::INTERNAL_PREFIX
                );
                let mut st = c.prepare_cached(&sql)?;
                let rows = st.query_map(
                    params![
                        log_id,
                        cursor,
                        types,
                        f.created_at_gt.as_ref().map(time::fmt),
                        f.created_at_gte.as_ref().map(time::fmt),
                        f.created_at_lt.as_ref().map(time::fmt),
                        f.created_at_lte.as_ref().map(time::fmt),
                        (f.limit + 1) as i64
                    ],
                    log::row_to_event,
                )?;
                let mut out = Vec::new();
                for r in rows {
                    out.push(r??);
                }
                Ok(Page::of(out, f.limit, |e| cursor::of_position(e.seq)))
            })
            .await
    }

    async fn event_position(&self, log_id: &str, event_id: &str) -> Result<Option<u64>> {
        let (lid, eid) = (log_id.to_owned(), event_id.to_owned());
        self.db
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT seq FROM events WHERE session_id = ?1 AND id = ?2",
                    params![lid, eid],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
                .map(|s| s as u64))
            })
            .await
    }
}

impl Store {
    /// A session in any workspace: for the harness, which acts for whoever owns it.
    /// The workspace session `id` belongs to.
    pub async fn session_workspace(&self, id: &str) -> Result<String> {
        let id = id.to_owned();
        self.db
            .read(move |c| {
                c.query_row(
                    "SELECT workspace_id FROM sessions WHERE id = ?1",
                    [&id],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| Error::NotFound(format!("session {id} not found")))
            })
            .await
    }

    pub async fn load_session(&self, id: &str) -> Result<Session> {
        let id = id.to_owned();
        self.db.read(move |c| get_in(c, None, &id)).await
    }

    /// A page of a session's events; the cursor is a position.
    pub async fn list_events(
        &self,
        ws: &str,
        sid: &str,
        f: EventFilter,
    ) -> Result<Page<StoredEvent>> {
        self.list_log_events(ws, sid, sid, f).await
    }
}

/// Store (or replace) the sealed token of resource `rid` of session `sid`.
fn put_token(c: &rusqlite::Connection, sid: &str, rid: &str, sealed: &[u8]) -> Result<()> {
    c.execute(
        "INSERT INTO resource_secrets (resource_id, session_id, sealed) VALUES (?1, ?2, ?3)
         ON CONFLICT (resource_id) DO UPDATE SET sealed = excluded.sealed",
        params![rid, sid, sealed],
    )?;
    Ok(())
}
