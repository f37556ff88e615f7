//! The work queue of self_hosted environments and their keys (`agentd_catalog::work`): items
//! stored whole as JSON; every change a read-modify-write in the one writer's transaction.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use agentd_catalog::WorkQueue;
use agentd_catalog::keys::hash;
use agentd_catalog::work::{
    EnvironmentKeyInfo, EnvironmentKeyOwner, WorkChange, WorkItem, mint_environment_key,
};
use agentd_wire::ids::{self, Kind};

use crate::{Error, Page, Result, Store, time};

fn get(c: &Connection, id: &str) -> Result<WorkItem> {
    let body: String = c
        .query_row("SELECT body FROM work_items WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("work {id} not found")))?;
    Ok(serde_json::from_str(&body)?)
}

fn items(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Vec<WorkItem>> {
    let mut st = c.prepare_cached(sql)?;
    let rows = st.query_map(p, |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for r in rows {
        out.push(serde_json::from_str(&r?)?);
    }
    Ok(out)
}

fn live_of_session(c: &Connection, sid: &str) -> Result<Option<WorkItem>> {
    Ok(items(
        c,
        "SELECT body FROM work_items WHERE session_id = ?1 AND state <> 'stopped'",
        [sid],
    )?
    .pop())
}

fn key_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<EnvironmentKeyInfo> {
    Ok(EnvironmentKeyInfo {
        id: r.get(0)?,
        environment_id: r.get(1)?,
        workspace_id: r.get(2)?,
        name: r.get(3)?,
        created_at: time::parse(&r.get::<_, String>(4)?)?,
        revoked_at: time::parse_opt(r.get(5)?)?,
    })
}

const KEY_COLUMNS: &str = "id, environment_id, workspace_id, name, created_at, revoked_at";

#[async_trait]
impl WorkQueue for Store {
    async fn queue_work(&self, mut item: WorkItem) -> Result<(WorkItem, bool)> {
        self.db
            .write(move |c| {
                item.workspace_id = c
                    .query_row(
                        "SELECT workspace_id FROM sessions WHERE id = ?1",
                        [&item.session_id],
                        |r| r.get(0),
                    )
                    .optional()?
                    .ok_or_else(|| {
                        Error::NotFound(format!("session {} not found", item.session_id))
                    })?;
                if let Some(live) = live_of_session(c, &item.session_id)? {
                    return Ok((live, false));
                }
                c.execute(
                    "INSERT INTO work_items (id, workspace_id, environment_id, session_id, state, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        item.id,
                        item.workspace_id,
                        item.environment_id,
                        item.session_id,
                        item.state.as_str(),
                        serde_json::to_string(&item)?
                    ],
                )?;
                Ok((item, true))
            })
            .await
    }

    async fn get_work(&self, id: &str) -> Result<WorkItem> {
        let id = id.to_owned();
        self.db.read(move |c| get(c, &id)).await
    }

    async fn update_work(&self, id: &str, f: WorkChange) -> Result<(WorkItem, bool)> {
        let id = id.to_owned();
        self.db
            .write(move |c| {
                let mut item = get(c, &id)?;
                if !f(&mut item) {
                    return Ok((item, false));
                }
                c.execute(
                    "UPDATE work_items SET state = ?2, body = ?3 WHERE id = ?1",
                    params![id, item.state.as_str(), serde_json::to_string(&item)?],
                )?;
                Ok((item, true))
            })
            .await
    }

    async fn list_work(
        &self,
        env: &str,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<WorkItem>> {
        let env = env.to_owned();
        self.db
            .read(move |c| {
                let rows = items(
                    c,
                    "SELECT body FROM work_items WHERE environment_id = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
                    params![env, page, (limit + 1) as i64],
                )?;
                Ok(Page::of(rows, limit, |w| w.id.clone()))
            })
            .await
    }

    async fn live_work(&self, env: Option<&str>) -> Result<Vec<WorkItem>> {
        let env = env.map(str::to_owned);
        self.db
            .read(move |c| {
                items(
                    c,
                    "SELECT body FROM work_items WHERE state <> 'stopped' AND (?1 IS NULL OR environment_id = ?1) ORDER BY id",
                    params![env],
                )
            })
            .await
    }

    async fn saw_poller(
        &self,
        env: &str,
        worker: &str,
        at_ms: i64,
        forget_before_ms: i64,
    ) -> Result<()> {
        let (env, worker) = (env.to_owned(), worker.to_owned());
        self.db
            .write(move |c| {
                c.execute(
                    "INSERT INTO work_pollers (environment_id, worker_id, polled_at_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (environment_id, worker_id) DO UPDATE SET polled_at_ms = excluded.polled_at_ms",
                    params![env, worker, at_ms],
                )?;
                c.execute(
                    "DELETE FROM work_pollers WHERE polled_at_ms < ?1",
                    params![forget_before_ms],
                )?;
                Ok(())
            })
            .await
    }

    async fn pollers(&self, env: &str, since_ms: i64) -> Result<u64> {
        let env = env.to_owned();
        self.db
            .read(move |c| {
                let n: i64 = c.query_row(
                    "SELECT COUNT(*) FROM work_pollers WHERE environment_id = ?1 AND polled_at_ms >= ?2",
                    params![env, since_ms],
                    |r| r.get(0),
                )?;
                Ok(n as u64)
            })
            .await
    }

    async fn session_work(&self, sid: &str) -> Result<Vec<WorkItem>> {
        let sid = sid.to_owned();
        self.db
            .read(move |c| {
                items(
                    c,
                    "SELECT body FROM work_items WHERE session_id = ?1 ORDER BY id",
                    [sid],
                )
            })
            .await
    }

    async fn create_environment_key(
        &self,
        env: &str,
        name: Option<&str>,
    ) -> Result<(EnvironmentKeyInfo, String)> {
        let key = mint_environment_key();
        let (env, name, k) = (env.to_owned(), name.map(str::to_owned), key.clone());
        let info = self
            .db
            .write(move |c| {
                let ws: String = c
                    .query_row(
                        "SELECT workspace_id FROM environments WHERE id = ?1",
                        [&env],
                        |r| r.get(0),
                    )
                    .optional()?
                    .ok_or_else(|| Error::NotFound(format!("environment {env} not found")))?;
                let info = EnvironmentKeyInfo {
                    id: ids::new(Kind::EnvironmentKey),
                    environment_id: env,
                    workspace_id: ws,
                    name,
                    created_at: time::now(),
                    revoked_at: None,
                };
                c.execute(
                    "INSERT INTO environment_keys (id, workspace_id, environment_id, hash, name, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        info.id,
                        info.workspace_id,
                        info.environment_id,
                        hash(&k),
                        info.name,
                        time::fmt(&info.created_at)
                    ],
                )?;
                Ok(info)
            })
            .await?;
        Ok((info, key))
    }

    async fn list_environment_keys(&self, env: &str) -> Result<Vec<EnvironmentKeyInfo>> {
        let env = env.to_owned();
        self.db
            .read(move |c| {
                let mut st = c.prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM environment_keys WHERE environment_id = ?1 ORDER BY id"
                ))?;
                let rows = st.query_map([env], key_info)?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    async fn revoke_environment_key(&self, env: &str, id: &str) -> Result<EnvironmentKeyInfo> {
        let (env, id) = (env.to_owned(), id.to_owned());
        self.db
            .write(move |c| {
                c.execute(
                    "UPDATE environment_keys SET revoked_at = ?3 WHERE environment_id = ?1 AND id = ?2 AND revoked_at IS NULL",
                    params![env, id, time::fmt(&time::now())],
                )?;
                c.query_row(
                    &format!(
                        "SELECT {KEY_COLUMNS} FROM environment_keys WHERE environment_id = ?1 AND id = ?2"
                    ),
                    params![env, id],
                    key_info,
                )
                .optional()?
                .ok_or_else(|| {
                    Error::NotFound(format!("environment {env} has no key {id}"))
                })
            })
            .await
    }

    async fn authenticate_environment_key(&self, key: &str) -> Result<Option<EnvironmentKeyOwner>> {
        let h = hash(key);
        self.db
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT workspace_id, environment_id FROM environment_keys WHERE hash = ?1 AND revoked_at IS NULL",
                    [h],
                    |r| {
                        Ok(EnvironmentKeyOwner {
                            workspace_id: r.get(0)?,
                            environment_id: r.get(1)?,
                        })
                    },
                )
                .optional()?)
            })
            .await
    }
}
