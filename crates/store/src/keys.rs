//! Workspaces and API keys, stored as `agentd_catalog::keys` hashes; the plaintext is shown once.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use agentd_catalog::keys::{hash, mint};
use agentd_catalog::{KeyInfo, Keys, Workspace};
use agentd_wire::ids::{self, Kind};

use crate::{Result, Store, time};

fn ensure_workspace(c: &Connection, name: &str) -> Result<Workspace> {
    if let Some(id) = c
        .query_row("SELECT id FROM workspaces WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?
    {
        return Ok(Workspace {
            id,
            name: name.to_owned(),
        });
    }
    let id = ids::new(Kind::Workspace);
    c.execute(
        "INSERT INTO workspaces (id, name, created_at) VALUES (?1, ?2, ?3)",
        params![id, name, time::fmt(&time::now())],
    )?;
    Ok(Workspace {
        id,
        name: name.to_owned(),
    })
}

fn insert_key(c: &Connection, ws: &Workspace, key: &str, name: Option<&str>) -> Result<KeyInfo> {
    let id = ids::new(Kind::ApiKey);
    let created_at = time::now();
    c.execute(
        "INSERT INTO api_keys (id, workspace_id, hash, name, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, ws.id, hash(key), name, time::fmt(&created_at)],
    )?;
    Ok(KeyInfo {
        id,
        workspace: ws.clone(),
        name: name.map(str::to_owned),
        created_at,
    })
}

#[async_trait]
impl Keys for Store {
    async fn register_key(&self, key: &str, workspace: &str) -> Result<Workspace> {
        let (key, workspace) = (key.to_owned(), workspace.to_owned());
        self.db
            .write(move |c| {
                if let Some(ws) = lookup(c, &key)? {
                    return Ok(ws);
                }
                let ws = ensure_workspace(c, &workspace)?;
                insert_key(c, &ws, &key, Some("AGENTD_API_KEY"))?;
                Ok(ws)
            })
            .await
    }

    async fn create_key(&self, workspace: &str, name: Option<&str>) -> Result<(KeyInfo, String)> {
        let key = mint();
        let (workspace, name) = (workspace.to_owned(), name.map(str::to_owned));
        let k = key.clone();
        let info = self
            .db
            .write(move |c| {
                let ws = ensure_workspace(c, &workspace)?;
                insert_key(c, &ws, &k, name.as_deref())
            })
            .await?;
        Ok((info, key))
    }

    async fn authenticate(&self, key: &str) -> Result<Option<Workspace>> {
        let key = key.to_owned();
        self.db.read(move |c| lookup(c, &key)).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.db
            .read(|c| {
                let mut st = c.prepare(
                    "SELECT k.id, k.name, k.created_at, w.id, w.name FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id ORDER BY k.id",
                )?;
                let rows = st.query_map([], |r| {
                    Ok(KeyInfo {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        created_at: time::parse(&r.get::<_, String>(2)?)?,
                        workspace: Workspace {
                            id: r.get(3)?,
                            name: r.get(4)?,
                        },
                    })
                })?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }
}

fn lookup(c: &Connection, key: &str) -> Result<Option<Workspace>> {
    Ok(c
        .query_row(
            "SELECT w.id, w.name FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id WHERE k.hash = ?1",
            [hash(key)],
            |r| {
                Ok(Workspace {
                    id: r.get(0)?,
                    name: r.get(1)?,
                })
            },
        )
        .optional()?)
}
