//! Agents and their immutable versions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use agentd_catalog::{AgentEdit, AgentFilter, Agents, Error, Page, Result};
use agentd_wire::agent::{Agent, AgentSpec, AgentTag};
use agentd_wire::ids::{self, Kind};

use crate::{Db, PgStore, fetch, json, log::now};

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("agent {id} not found"))
}

const SELECT: &str = "SELECT a.id, v.version, v.spec::text, a.created_at, v.created_at, a.archived_at FROM agents a JOIN agent_versions v ON v.agent_id = a.id";

fn decode(r: &Row) -> Result<Agent> {
    let version: i32 = r.get(1);
    Ok(Agent {
        id: r.get(0),
        kind: AgentTag::Agent,
        version: u32::try_from(version).map_err(|e| Error::Storage(e.to_string()))?,
        spec: json(r.get(2))?,
        created_at: r.get(3),
        updated_at: r.get(4),
        archived_at: r.get(5),
    })
}

fn version_param(v: Option<u32>) -> Result<Option<i32>> {
    v.map(i32::try_from)
        .transpose()
        .map_err(|_| Error::Invalid("version: out of range".into()))
}

async fn get_in(c: &impl GenericClient, ws: &str, id: &str, version: Option<u32>) -> Result<Agent> {
    let sql = format!(
        "{SELECT} WHERE a.workspace_id = $1 AND a.id = $2 AND v.version = COALESCE($3, a.latest_version)"
    );
    let row = c
        .query_opt(&sql, &[&ws, &id, &version_param(version)?])
        .await
        .db()?
        .ok_or_else(|| match version {
            Some(v) => Error::NotFound(format!("agent {id} has no version {v}")),
            None => not_found(id),
        })?;
    decode(&row)
}

async fn insert_version(
    c: &impl GenericClient,
    id: &str,
    version: u32,
    spec: &AgentSpec,
    at: DateTime<Utc>,
) -> Result<()> {
    c.execute(
        "INSERT INTO agent_versions (agent_id, version, spec, created_at) VALUES ($1, $2, $3::text::json, $4)",
        &[&id, &version_param(Some(version))?, &serde_json::to_string(spec)?, &at],
    )
    .await
    .db()?;
    Ok(())
}

#[async_trait]
impl Agents for PgStore {
    async fn create_agent(&self, ws: &str, spec: AgentSpec) -> Result<Agent> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        let id = ids::new(Kind::Agent);
        let now = now();
        tx.execute(
            "INSERT INTO agents (id, workspace_id, latest_version, created_at, updated_at) VALUES ($1, $2, 1, $3, $3)",
            &[&id, &ws, &now],
        )
        .await
        .db()?;
        insert_version(&tx, &id, 1, &spec, now).await?;
        let agent = get_in(&tx, ws, &id, None).await?;
        tx.commit().await.db()?;
        Ok(agent)
    }

    async fn get_agent(&self, ws: &str, id: &str, version: Option<u32>) -> Result<Agent> {
        get_in(&self.client().await?, ws, id, version).await
    }

    async fn update_agent(
        &self,
        ws: &str,
        id: &str,
        expected: Option<u32>,
        f: AgentEdit,
    ) -> Result<(Agent, bool)> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        // Two processes updating at once take turns: the second sees the first's version.
        tx.execute(
            "SELECT 1 FROM agents WHERE id = $1 AND workspace_id = $2 FOR UPDATE",
            &[&id, &ws],
        )
        .await
        .db()?;
        let current = get_in(&tx, ws, id, None).await?;
        let Some(next) = agentd_catalog::rules::next_version(&current, expected, f)? else {
            return Ok((current, false));
        };
        let version = current.version + 1;
        let now = now();
        insert_version(&tx, id, version, &next, now).await?;
        tx.execute(
            "UPDATE agents SET latest_version = $2, updated_at = $3 WHERE id = $1",
            &[&id, &version_param(Some(version))?, &now],
        )
        .await
        .db()?;
        let agent = get_in(&tx, ws, id, None).await?;
        tx.commit().await.db()?;
        Ok((agent, true))
    }

    async fn archive_agent(&self, ws: &str, id: &str) -> Result<Agent> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE agents SET archived_at = COALESCE(archived_at, $3), updated_at = $3 WHERE id = $1 AND workspace_id = $2",
                &[&id, &ws, &now()],
            )
            .await
            .db()?;
        if n == 0 {
            return Err(not_found(id));
        }
        get_in(&c, ws, id, None).await
    }

    async fn list_agents(&self, ws: &str, f: AgentFilter) -> Result<Page<Agent>> {
        let sql = format!(
            "{SELECT} WHERE a.workspace_id = $1 AND v.version = a.latest_version
             AND ($2 OR a.archived_at IS NULL)
             AND ($3::timestamptz IS NULL OR a.created_at >= $3)
             AND ($4::timestamptz IS NULL OR a.created_at <= $4)
             AND ($5::text IS NULL OR a.id < $5)
             ORDER BY a.id DESC LIMIT $6"
        );
        let rows = self
            .client()
            .await?
            .query(
                &sql,
                &[
                    &ws,
                    &f.include_archived,
                    &f.created_at_gte,
                    &f.created_at_lte,
                    &f.page,
                    &fetch(f.limit),
                ],
            )
            .await
            .db()?;
        let agents = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(Page::of(agents, f.limit, |a| a.id.clone()))
    }

    async fn list_agent_versions(
        &self,
        ws: &str,
        id: &str,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<Agent>> {
        let before = agentd_catalog::cursor::version(page.as_deref())?;
        let c = self.client().await?;
        get_in(&c, ws, id, None).await?;
        let sql = format!(
            "{SELECT} WHERE a.workspace_id = $1 AND a.id = $2 AND ($3::int IS NULL OR v.version < $3) ORDER BY v.version DESC LIMIT $4"
        );
        let rows = c
            .query(&sql, &[&ws, &id, &version_param(before)?, &fetch(limit)])
            .await
            .db()?;
        let agents = rows.iter().map(decode).collect::<Result<Vec<_>>>()?;
        Ok(Page::of(agents, limit, |a| a.version.to_string()))
    }
}
