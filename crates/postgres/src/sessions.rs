//! Session rows and event queries. Appends go through `SessionLog` (see `log.rs`); the
//! catalog writes that also append (create, update) run the append in their own transaction,
//! after locking the session's row, as every append does.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use agentd_catalog::{Error, cursor};
use agentd_catalog::{EventFilter, NewSession, Order, Page, Result, SessionFilter, Sessions};
use agentd_session::projection::{self, Projection};
use agentd_session::{Guard, StoredEvent};
use agentd_wire::ids::{self, Kind};
use agentd_wire::resource::Resource;
use agentd_wire::session::{SessionTag, Stats};
use agentd_wire::{Session, SessionStatus, Usage};

use crate::{Db, PgStore, fetch, json, log, log::now, notify};

const SELECT: &str = "SELECT id, agent::text, environment_id, status, title, metadata::text, usage::text, active_ms, running_since, created_at, updated_at, archived_at, outcomes::text, list_cost, resources::text, vault_ids::text FROM sessions";

fn decode(r: &Row) -> Result<Session> {
    let running_since = r.get(8);
    let created_at = r.get(9);
    let (active_seconds, duration_seconds) =
        projection::stats(r.get(7), running_since, created_at, now());
    let status: &str = r.get(3);
    let usage: Usage = json(r.get(6))?;
    let cost = u64::try_from(r.get::<_, i64>(13)).map_err(|e| Error::Storage(e.to_string()))?;
    let usage = projection::shown_usage(&usage, cost, Some(active_seconds));
    Ok(Session {
        id: r.get(0),
        kind: SessionTag::Session,
        agent: json(r.get(1))?,
        environment_id: r.get(2),
        status: SessionStatus::parse(status)
            .ok_or_else(|| Error::Storage(format!("unknown status {status:?}")))?,
        title: r.get(4),
        metadata: json(r.get(5))?,
        usage,
        stats: Stats {
            active_seconds,
            duration_seconds,
        },
        resources: json(r.get(14))?,
        vault_ids: json(r.get(15))?,
        outcome_evaluations: json(r.get(12))?,
        budget: None,
        deployment_id: None,
        created_at,
        updated_at: r.get(10),
        archived_at: r.get(11),
    })
}

/// The session `id`, in workspace `ws` or (for the harness) any; locked until the transaction
/// ends with `lock`.
pub(crate) async fn get(
    c: &impl GenericClient,
    ws: Option<&str>,
    id: &str,
    lock: &str,
) -> Result<Session> {
    let sql = format!("{SELECT} WHERE id = $1 AND ($2::text IS NULL OR workspace_id = $2) {lock}");
    let row = c
        .query_opt(&sql, &[&id, &ws])
        .await
        .db()?
        .ok_or_else(|| Error::NotFound(format!("session {id} not found")))?;
    decode(&row)
}

/// Refuse a session in an environment that is missing or archived; the row stays locked
/// against a delete until the transaction ends.
async fn check_environment(c: &impl GenericClient, ws: &str, id: &str) -> Result<()> {
    let env = crate::environments::get(c, Some(ws), id, "FOR SHARE").await?;
    if env.archived_at.is_some() {
        return Err(Error::Conflict(format!(
            "environment {id} is archived; sessions cannot start in it"
        )));
    }
    Ok(())
}

#[async_trait]
impl Sessions for PgStore {
    async fn create_session(&self, ws: &str, s: NewSession, initial: Guard) -> Result<Session> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        check_environment(&tx, ws, &s.environment_id).await?;
        for (i, v) in s.vault_ids.iter().enumerate() {
            // Shared lock: an archive waits for this session to commit, and not the other way.
            let archived: Option<bool> = tx
                .query_opt(
                    "SELECT archived_at IS NOT NULL FROM vaults WHERE workspace_id = $1 AND id = $2 FOR SHARE",
                    &[&ws, v],
                )
                .await
                .db()?
                .map(|r| r.get(0));
            agentd_catalog::rules::session_vault(i, v, archived)?;
        }
        let id = ids::new(Kind::Session);
        let version = i32::try_from(s.agent.version).map_err(|e| Error::Invalid(e.to_string()))?;
        tx.execute(
            "INSERT INTO sessions (id, workspace_id, agent_id, agent_version, agent, environment_id, status, title, metadata, usage, created_at, updated_at, vault_ids)
             VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, $7, $8, $9::text::jsonb, $10::text::jsonb, $11, $11, $12::text::jsonb)",
            &[
                &id,
                &ws,
                &s.agent.id,
                &version,
                &serde_json::to_string(&s.agent)?,
                &s.environment_id,
                &Projection::default().status.as_str(),
                &s.title,
                &serde_json::to_string(&s.metadata)?,
                &serde_json::to_string(&Usage::default())?,
                &now(),
                &serde_json::to_string(&s.vault_ids)?,
            ],
        )
        .await
        .db()?;
        if !s.resources.is_empty() {
            tx.execute(
                "UPDATE sessions SET resources = $2::text::jsonb WHERE id = $1",
                &[&id, &serde_json::to_string(&s.resources)?],
            )
            .await
            .db()?;
        }
        for (rid, sealed) in &s.sealed_tokens {
            put_token(&tx, &id, rid, sealed).await?;
        }
        let (_, touched) = log::append_in(&tx, &id, initial).await?;
        let session = get(&tx, Some(ws), &id, "").await?;
        tx.commit().await.db()?;
        self.tell(touched);
        Ok(session)
    }

    async fn get_session(&self, ws: &str, id: &str) -> Result<Session> {
        get(&self.client().await?, Some(ws), id, "").await
    }

    async fn add_session_resource(
        &self,
        ws: &str,
        id: &str,
        r: Resource,
        sealed_token: Option<Vec<u8>>,
    ) -> Result<Session> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        let mut s = get(&tx, Some(ws), id, "FOR UPDATE").await?;
        if let Some(sealed) = &sealed_token {
            put_token(&tx, id, r.id(), sealed).await?;
        }
        agentd_catalog::resources::add(&mut s.resources, r)?;
        tx.execute(
            "UPDATE sessions SET resources = $2::text::jsonb, updated_at = $3 WHERE id = $1",
            &[&id, &serde_json::to_string(&s.resources)?, &now()],
        )
        .await
        .db()?;
        let session = get(&tx, Some(ws), id, "").await?;
        tx.commit().await.db()?;
        Ok(session)
    }

    async fn set_resource_token(
        &self,
        ws: &str,
        id: &str,
        rid: &str,
        sealed_token: Vec<u8>,
    ) -> Result<Resource> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        let mut s = get(&tx, Some(ws), id, "FOR UPDATE").await?;
        let at = now();
        let r = agentd_catalog::resources::retoken(&mut s.resources, rid, at)?;
        put_token(&tx, id, rid, &sealed_token).await?;
        tx.execute(
            "UPDATE sessions SET resources = $2::text::jsonb, updated_at = $3 WHERE id = $1",
            &[&id, &serde_json::to_string(&s.resources)?, &at],
        )
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(r)
    }

    async fn delete_session_resource(&self, ws: &str, id: &str, rid: &str) -> Result<Resource> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        let mut s = get(&tx, Some(ws), id, "FOR UPDATE").await?;
        let gone = agentd_catalog::resources::remove(&mut s.resources, rid)?;
        tx.execute(
            "DELETE FROM resource_secrets WHERE resource_id = $1",
            &[&rid],
        )
        .await
        .db()?;
        tx.execute(
            "UPDATE sessions SET resources = $2::text::jsonb, updated_at = $3 WHERE id = $1",
            &[&id, &serde_json::to_string(&s.resources)?, &now()],
        )
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(gone)
    }

    async fn update_session(
        &self,
        ws: &str,
        id: &str,
        title: Option<Option<String>>,
        metadata: Option<BTreeMap<String, Option<String>>>,
    ) -> Result<Session> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        let before = get(&tx, Some(ws), id, "FOR UPDATE").await?;
        let Some(change) = agentd_session::catalog::session_update(
            &before.title,
            &before.metadata,
            title,
            metadata,
        ) else {
            return Ok(before);
        };
        tx.execute(
            "UPDATE sessions SET title = $2, metadata = $3::text::jsonb WHERE id = $1",
            &[
                &id,
                &change.title,
                &serde_json::to_string(&change.metadata)?,
            ],
        )
        .await
        .db()?;
        let logged = agentd_session::events(vec![change.event]);
        let (_, touched) = log::append_in(&tx, id, logged).await?;
        let session = get(&tx, Some(ws), id, "").await?;
        tx.commit().await.db()?;
        // A stream open on the session shows the change now, not at the next append.
        self.tell(touched);
        Ok(session)
    }

    async fn archive_session(&self, ws: &str, id: &str) -> Result<Session> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE sessions SET archived_at = COALESCE(archived_at, $3) WHERE id = $1 AND workspace_id = $2",
                &[&id, &ws, &now()],
            )
            .await
            .db()?;
        if n == 0 {
            return Err(Error::NotFound(format!("session {id} not found")));
        }
        get(&c, Some(ws), id, "").await
    }

    async fn delete_session(&self, ws: &str, id: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        get(&tx, Some(ws), id, "FOR UPDATE").await?;
        let mut logs: Vec<String> = tx
            .query("SELECT id FROM threads WHERE session_id = $1", &[&id])
            .await
            .db()?
            .iter()
            .map(|r| r.get(0))
            .collect();
        logs.push(id.to_owned());
        tx.execute("DELETE FROM events WHERE log_id = ANY($1)", &[&logs])
            .await
            .db()?;
        tx.execute("DELETE FROM threads WHERE session_id = $1", &[&id])
            .await
            .db()?;
        tx.execute("DELETE FROM resource_secrets WHERE session_id = $1", &[&id])
            .await
            .db()?;
        tx.execute("DELETE FROM work_items WHERE session_id = $1", &[&id])
            .await
            .db()?;
        tx.execute("DELETE FROM sessions WHERE id = $1", &[&id])
            .await
            .db()?;
        let gone: Vec<(String, u64)> = logs
            .into_iter()
            .map(|l| (l, agentd_session::DELETED))
            .collect();
        // Subscribers in other processes hear of it when the deletion commits.
        notify::send(&tx, &gone).await?;
        tx.commit().await.db()?;
        self.tell(gone);
        Ok(())
    }

    async fn running_sessions(&self) -> Result<Vec<String>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id FROM sessions WHERE status = 'running' ORDER BY id",
                &[],
            )
            .await
            .db()?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn list_sessions(&self, ws: &str, f: SessionFilter) -> Result<Page<Session>> {
        let (cmp, dir) = match f.order {
            Order::Asc => (">", "ASC"),
            Order::Desc => ("<", "DESC"),
        };
        let sql = format!(
            "{SELECT} WHERE workspace_id = $1 AND ($2 OR archived_at IS NULL)
             AND ($3::text IS NULL OR agent_id = $3) AND ($4::int IS NULL OR agent_version = $4)
             AND ($5::timestamptz IS NULL OR created_at > $5) AND ($6::timestamptz IS NULL OR created_at >= $6)
             AND ($7::timestamptz IS NULL OR created_at < $7) AND ($8::timestamptz IS NULL OR created_at <= $8)
             AND (cardinality($9::text[]) = 0 OR status = ANY($9))
             AND ($10::text IS NULL OR id {cmp} $10)
             ORDER BY id {dir} LIMIT $11"
        );
        let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        let version = f
            .agent_version
            .map(i32::try_from)
            .transpose()
            .map_err(|e| Error::Invalid(format!("agent_version: {e}")))?;
        let rows = self
            .client()
            .await?
            .query(
                &sql,
                &[
                    &ws,
                    &f.include_archived,
                    &f.agent_id,
                    &version,
                    &f.created_at_gt,
                    &f.created_at_gte,
                    &f.created_at_lt,
                    &f.created_at_lte,
                    &statuses,
                    &f.page,
                    &fetch(f.limit),
                ],
            )
            .await
            .db()?;
        let sessions = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(Page::of(sessions, f.limit, |s| s.id.clone()))
    }

    async fn list_log_events(
        &self,
        ws: &str,
        sid: &str,
        log_id: &str,
        f: EventFilter,
    ) -> Result<Page<StoredEvent>> {
        let cursor =
            cursor::position(f.page.as_deref())?.map(|seq| i64::try_from(seq).unwrap_or(i64::MAX));
        let c = self.client().await?;
        get(&c, Some(ws), sid, "").await?;
        let (cmp, dir) = match f.order {
            Order::Asc => (">", "ASC"),
            Order::Desc => ("<", "DESC"),
        };
        // Internal events are never shown; the prefix is what marks them.
        let sql = format!(
            "SELECT seq, id, processed_at, body::text, private::text FROM events WHERE log_id = $1
             AND ($2::bigint IS NULL OR seq {cmp} $2)
             AND left(type, {n}) <> '{internal}'
             AND (cardinality($3::text[]) = 0 OR type = ANY($3))
             AND ($4::timestamptz IS NULL OR processed_at > $4) AND ($5::timestamptz IS NULL OR processed_at >= $5)
             AND ($6::timestamptz IS NULL OR processed_at < $6) AND ($7::timestamptz IS NULL OR processed_at <= $7)
             ORDER BY seq {dir} LIMIT $8",
            internal = agentd_wire::event::INTERNAL_PREFIX,
            n = agentd_wire::event::INTERNAL_PREFIX.len(),
        );
        let rows = c
            .query(
                &sql,
                &[
                    &log_id,
                    &cursor,
                    &f.types,
                    &f.created_at_gt,
                    &f.created_at_gte,
                    &f.created_at_lt,
                    &f.created_at_lte,
                    &fetch(f.limit),
                ],
            )
            .await
            .db()?;
        let events = rows
            .iter()
            .map(log::row_to_event)
            .collect::<agentd_session::Result<Vec<_>>>()?;
        Ok(Page::of(events, f.limit, |e| cursor::of_position(e.seq)))
    }

    async fn event_position(&self, log_id: &str, event_id: &str) -> Result<Option<u64>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT seq FROM events WHERE log_id = $1 AND id = $2",
                &[&log_id, &event_id],
            )
            .await
            .db()?;
        Ok(row.map(|r| r.get::<_, i64>(0).unsigned_abs()))
    }
}

impl PgStore {
    /// Tell this process's subscribers of tails a committed transaction moved.
    pub(crate) fn tell(&self, touched: Vec<(String, u64)>) {
        for (log, tail) in touched {
            self.tails.notify(&log, tail);
        }
    }

    /// A session in any workspace: for the harness, which acts for whoever owns it.
    /// The workspace session `id` belongs to.
    pub async fn session_workspace(&self, id: &str) -> Result<String> {
        self.client()
            .await?
            .query_opt("SELECT workspace_id FROM sessions WHERE id = $1", &[&id])
            .await
            .db()?
            .map(|r| r.get(0))
            .ok_or_else(|| Error::NotFound(format!("session {id} not found")))
    }

    pub async fn load_session(&self, id: &str) -> Result<Session> {
        get(&self.client().await?, None, id, "").await
    }
}

/// Store (or replace) the sealed token of resource `rid` of session `sid`.
async fn put_token(tx: &impl GenericClient, sid: &str, rid: &str, sealed: &[u8]) -> Result<()> {
    tx.execute(
        "INSERT INTO resource_secrets (resource_id, session_id, sealed) VALUES ($1, $2, $3)
         ON CONFLICT (resource_id) DO UPDATE SET sealed = excluded.sealed",
        &[&rid, &sid, &sealed],
    )
    .await
    .db()?;
    Ok(())
}
