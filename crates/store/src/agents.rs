//! Agents and their immutable versions.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use agentd_catalog::{AgentEdit, AgentFilter, Agents};
use agentd_wire::agent::{Agent, AgentSpec, AgentTag};
use agentd_wire::ids::{self, Kind};

use crate::{Error, Page, Result, Store, time};

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("agent {id} not found"))
}

const SELECT: &str = "SELECT a.id, v.version, v.spec, a.created_at, v.created_at, a.archived_at FROM agents a JOIN agent_versions v ON v.agent_id = a.id";

fn row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(String, u32, String, String, String, Option<String>)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn decode(
    (id, version, spec, created, updated, archived): (
        String,
        u32,
        String,
        String,
        String,
        Option<String>,
    ),
) -> Result<Agent> {
    Ok(Agent {
        id,
        kind: AgentTag::Agent,
        version,
        spec: serde_json::from_str(&spec)?,
        created_at: time::parse(&created)?,
        updated_at: time::parse(&updated)?,
        archived_at: time::parse_opt(archived)?,
    })
}

fn get_in(c: &Connection, ws: &str, id: &str, version: Option<u32>) -> Result<Agent> {
    let sql = format!(
        "{SELECT} WHERE a.workspace_id = ?1 AND a.id = ?2 AND v.version = COALESCE(?3, a.latest_version)"
    );
    let r = c
        .query_row(&sql, params![ws, id, version], row)
        .optional()?
        .ok_or_else(|| match version {
            Some(v) => Error::NotFound(format!("agent {id} has no version {v}")),
            None => not_found(id),
        })?;
    decode(r)
}

#[async_trait]
impl Agents for Store {
    async fn create_agent(&self, ws: &str, spec: AgentSpec) -> Result<Agent> {
        let ws = ws.to_owned();
        self.db
            .write(move |c| {
                let id = ids::new(Kind::Agent);
                let now = time::fmt(&time::now());
                c.execute(
                    "INSERT INTO agents (id, workspace_id, latest_version, created_at, updated_at) VALUES (?1, ?2, 1, ?3, ?3)",
                    params![id, ws, now],
                )?;
                c.execute(
                    "INSERT INTO agent_versions (agent_id, version, spec, created_at) VALUES (?1, 1, ?2, ?3)",
                    params![id, serde_json::to_string(&spec)?, now],
                )?;
                get_in(c, &ws, &id, None)
            })
            .await
    }

    async fn get_agent(&self, ws: &str, id: &str, version: Option<u32>) -> Result<Agent> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db.read(move |c| get_in(c, &ws, &id, version)).await
    }

    async fn update_agent(
        &self,
        ws: &str,
        id: &str,
        expected: Option<u32>,
        f: AgentEdit,
    ) -> Result<(Agent, bool)> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db
            .write(move |c| {
                let current = get_in(c, &ws, &id, None)?;
                let Some(next) = agentd_catalog::rules::next_version(&current, expected, f)? else {
                    return Ok((current, false));
                };
                let version = current.version + 1;
                let now = time::fmt(&time::now());
                c.execute(
                    "INSERT INTO agent_versions (agent_id, version, spec, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![id, version, serde_json::to_string(&next)?, now],
                )?;
                c.execute(
                    "UPDATE agents SET latest_version = ?2, updated_at = ?3 WHERE id = ?1",
                    params![id, version, now],
                )?;
                Ok((get_in(c, &ws, &id, None)?, true))
            })
            .await
    }

    async fn archive_agent(&self, ws: &str, id: &str) -> Result<Agent> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db
            .write(move |c| {
                get_in(c, &ws, &id, None)?;
                let now = time::fmt(&time::now());
                c.execute(
                    "UPDATE agents SET archived_at = COALESCE(archived_at, ?2), updated_at = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
                get_in(c, &ws, &id, None)
            })
            .await
    }

    async fn list_agents(&self, ws: &str, f: AgentFilter) -> Result<Page<Agent>> {
        let ws = ws.to_owned();
        self.db
            .read(move |c| {
                let sql = format!(
                    "{SELECT} WHERE a.workspace_id = ?1 AND v.version = a.latest_version
                     AND (?2 OR a.archived_at IS NULL)
                     AND (?3 IS NULL OR a.created_at >= ?3) AND (?4 IS NULL OR a.created_at <= ?4)
                     AND (?5 IS NULL OR a.id < ?5)
                     ORDER BY a.id DESC LIMIT ?6"
                );
                let mut st = c.prepare_cached(&sql)?;
                let rows = st.query_map(
                    params![
                        ws,
                        f.include_archived,
                        f.created_at_gte.as_ref().map(time::fmt),
                        f.created_at_lte.as_ref().map(time::fmt),
                        f.page,
                        (f.limit + 1) as i64
                    ],
                    row,
                )?;
                let agents = rows.map(|r| decode(r?)).collect::<Result<Vec<_>>>()?;
                Ok(Page::of(agents, f.limit, |a| a.id.clone()))
            })
            .await
    }

    async fn list_agent_versions(
        &self,
        ws: &str,
        id: &str,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<Agent>> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        let before = agentd_catalog::cursor::version(page.as_deref())?;
        self.db
            .read(move |c| {
                get_in(c, &ws, &id, None)?;
                let sql = format!(
                    "{SELECT} WHERE a.workspace_id = ?1 AND a.id = ?2 AND (?3 IS NULL OR v.version < ?3) ORDER BY v.version DESC LIMIT ?4"
                );
                let mut st = c.prepare_cached(&sql)?;
                let rows = st.query_map(params![ws, id, before, (limit + 1) as i64], row)?;
                let agents = rows
                    .map(|r| decode(r?))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Page::of(agents, limit, |a| a.version.to_string()))
            })
            .await
    }
}
