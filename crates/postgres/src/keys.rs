//! Workspaces and API keys, stored as `agentd_catalog::keys` hashes.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;

use agentd_catalog::keys::{hash, mint};
use agentd_catalog::{KeyInfo, Keys, Result, Workspace};
use agentd_wire::ids::{self, Kind};

use crate::{Db, PgStore, log::now};

/// The workspace named `name`, made if new. Two processes making it at once agree on one row.
async fn ensure_workspace(c: &impl GenericClient, name: &str) -> Result<Workspace> {
    let id = ids::new(Kind::Workspace);
    c.execute(
        "INSERT INTO workspaces (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        &[&id, &name, &now()],
    )
    .await
    .db()?;
    let row = c
        .query_one("SELECT id FROM workspaces WHERE name = $1", &[&name])
        .await
        .db()?;
    Ok(Workspace {
        id: row.get(0),
        name: name.to_owned(),
    })
}

async fn insert_key(
    c: &impl GenericClient,
    ws: &Workspace,
    key: &str,
    name: Option<&str>,
) -> Result<KeyInfo> {
    let id = ids::new(Kind::ApiKey);
    let created_at = now();
    c.execute(
        "INSERT INTO api_keys (id, workspace_id, hash, name, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (hash) DO NOTHING",
        &[&id, &ws.id, &hash(key), &name, &created_at],
    )
    .await
    .db()?;
    Ok(KeyInfo {
        id,
        workspace: ws.clone(),
        name: name.map(str::to_owned),
        created_at,
    })
}

async fn lookup(c: &impl GenericClient, key: &str) -> Result<Option<Workspace>> {
    let row = c
        .query_opt(
            "SELECT w.id, w.name FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id WHERE k.hash = $1",
            &[&hash(key)],
        )
        .await
        .db()?;
    Ok(row.map(|r| Workspace {
        id: r.get(0),
        name: r.get(1),
    }))
}

#[async_trait]
impl Keys for PgStore {
    async fn register_key(&self, key: &str, workspace: &str) -> Result<Workspace> {
        let c = self.client().await?;
        if let Some(ws) = lookup(&c, key).await? {
            return Ok(ws);
        }
        let ws = ensure_workspace(&c, workspace).await?;
        insert_key(&c, &ws, key, Some("AGENTD_API_KEY")).await?;
        // Another process may have registered the same key first: the stored row decides.
        Ok(lookup(&c, key).await?.unwrap_or(ws))
    }

    async fn create_key(&self, workspace: &str, name: Option<&str>) -> Result<(KeyInfo, String)> {
        let key = mint();
        let c = self.client().await?;
        let ws = ensure_workspace(&c, workspace).await?;
        let info = insert_key(&c, &ws, &key, name).await?;
        Ok((info, key))
    }

    async fn authenticate(&self, key: &str) -> Result<Option<Workspace>> {
        lookup(&self.client().await?, key).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT k.id, k.name, k.created_at, w.id, w.name FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id ORDER BY k.id",
                &[],
            )
            .await
            .db()?;
        Ok(rows
            .iter()
            .map(|r| KeyInfo {
                id: r.get(0),
                name: r.get(1),
                created_at: r.get(2),
                workspace: Workspace {
                    id: r.get(3),
                    name: r.get(4),
                },
            })
            .collect())
    }
}
