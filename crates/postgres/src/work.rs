//! The work queue of self_hosted environments and their keys (`agentd_catalog::work`): items
//! stored whole as JSON; every change a read-modify-write under the item's row lock, so
//! workers polling several agentd processes at once see one winner.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;

use agentd_catalog::keys::hash;
use agentd_catalog::work::{
    EnvironmentKeyInfo, EnvironmentKeyOwner, WorkChange, WorkItem, mint_environment_key,
};
use agentd_catalog::{Error, Page, Result, WorkQueue};
use agentd_wire::ids::{self, Kind};

use crate::{Db, PgStore, fetch, json, log::now};

async fn items(
    c: &impl GenericClient,
    sql: &str,
    p: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<WorkItem>> {
    let rows = c.query(sql, p).await.db()?;
    rows.iter().map(|r| json(r.get(0))).collect()
}

fn key_info(r: &tokio_postgres::Row) -> EnvironmentKeyInfo {
    EnvironmentKeyInfo {
        id: r.get(0),
        environment_id: r.get(1),
        workspace_id: r.get(2),
        name: r.get(3),
        created_at: r.get(4),
        revoked_at: r.get(5),
    }
}

const KEY_COLUMNS: &str = "id, environment_id, workspace_id, name, created_at, revoked_at";

#[async_trait]
impl WorkQueue for PgStore {
    async fn queue_work(&self, mut item: WorkItem) -> Result<(WorkItem, bool)> {
        let c = self.client().await?;
        item.workspace_id = c
            .query_opt(
                "SELECT workspace_id FROM sessions WHERE id = $1",
                &[&item.session_id],
            )
            .await
            .db()?
            .ok_or_else(|| Error::NotFound(format!("session {} not found", item.session_id)))?
            .get(0);
        // The partial unique index decides between two processes queueing at once.
        let n = c
            .execute(
                "INSERT INTO work_items (id, workspace_id, environment_id, session_id, state, body)
                 VALUES ($1, $2, $3, $4, $5, $6::text::json)
                 ON CONFLICT (session_id) WHERE state <> 'stopped' DO NOTHING",
                &[
                    &item.id,
                    &item.workspace_id,
                    &item.environment_id,
                    &item.session_id,
                    &item.state.as_str(),
                    &serde_json::to_string(&item)?,
                ],
            )
            .await
            .db()?;
        if n == 1 {
            return Ok((item, true));
        }
        let live = items(
            &c,
            "SELECT body::text FROM work_items WHERE session_id = $1 AND state <> 'stopped'",
            &[&item.session_id],
        )
        .await?;
        match live.into_iter().next() {
            Some(w) => Ok((w, false)),
            // Stopped between the insert and the read: queue again.
            None => Box::pin(self.queue_work(item)).await,
        }
    }

    async fn get_work(&self, id: &str) -> Result<WorkItem> {
        let c = self.client().await?;
        items(
            &c,
            "SELECT body::text FROM work_items WHERE id = $1",
            &[&id],
        )
        .await?
        .pop()
        .ok_or_else(|| Error::NotFound(format!("work {id} not found")))
    }

    async fn update_work(&self, id: &str, f: WorkChange) -> Result<(WorkItem, bool)> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        let mut item = items(
            &tx,
            "SELECT body::text FROM work_items WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .pop()
        .ok_or_else(|| Error::NotFound(format!("work {id} not found")))?;
        if !f(&mut item) {
            return Ok((item, false));
        }
        tx.execute(
            "UPDATE work_items SET state = $2, body = $3::text::json WHERE id = $1",
            &[&id, &item.state.as_str(), &serde_json::to_string(&item)?],
        )
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok((item, true))
    }

    async fn list_work(
        &self,
        env: &str,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<WorkItem>> {
        let c = self.client().await?;
        let rows = items(
            &c,
            "SELECT body::text FROM work_items WHERE environment_id = $1 AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
            &[&env, &page, &fetch(limit)],
        )
        .await?;
        Ok(Page::of(rows, limit, |w| w.id.clone()))
    }

    async fn live_work(&self, env: Option<&str>) -> Result<Vec<WorkItem>> {
        let c = self.client().await?;
        items(
            &c,
            "SELECT body::text FROM work_items WHERE state <> 'stopped' AND ($1::text IS NULL OR environment_id = $1) ORDER BY id",
            &[&env],
        )
        .await
    }

    async fn saw_poller(
        &self,
        env: &str,
        worker: &str,
        at_ms: i64,
        forget_before_ms: i64,
    ) -> Result<()> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO work_pollers (environment_id, worker_id, polled_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (environment_id, worker_id) DO UPDATE SET polled_at_ms = excluded.polled_at_ms",
            &[&env, &worker, &at_ms],
        )
        .await
        .db()?;
        c.execute(
            "DELETE FROM work_pollers WHERE polled_at_ms < $1",
            &[&forget_before_ms],
        )
        .await
        .db()?;
        Ok(())
    }

    async fn pollers(&self, env: &str, since_ms: i64) -> Result<u64> {
        let c = self.client().await?;
        let n: i64 = c
            .query_one(
                "SELECT COUNT(*) FROM work_pollers WHERE environment_id = $1 AND polled_at_ms >= $2",
                &[&env, &since_ms],
            )
            .await
            .db()?
            .get(0);
        Ok(n as u64)
    }

    async fn session_work(&self, sid: &str) -> Result<Vec<WorkItem>> {
        let c = self.client().await?;
        items(
            &c,
            "SELECT body::text FROM work_items WHERE session_id = $1 ORDER BY id",
            &[&sid],
        )
        .await
    }

    async fn create_environment_key(
        &self,
        env: &str,
        name: Option<&str>,
    ) -> Result<(EnvironmentKeyInfo, String)> {
        let key = mint_environment_key();
        let c = self.client().await?;
        let ws: String = c
            .query_opt(
                "SELECT workspace_id FROM environments WHERE id = $1",
                &[&env],
            )
            .await
            .db()?
            .ok_or_else(|| Error::NotFound(format!("environment {env} not found")))?
            .get(0);
        let info = EnvironmentKeyInfo {
            id: ids::new(Kind::EnvironmentKey),
            environment_id: env.to_owned(),
            workspace_id: ws,
            name: name.map(str::to_owned),
            created_at: now(),
            revoked_at: None,
        };
        c.execute(
            "INSERT INTO environment_keys (id, workspace_id, environment_id, hash, name, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &info.id,
                &info.workspace_id,
                &info.environment_id,
                &hash(&key),
                &info.name,
                &info.created_at,
            ],
        )
        .await
        .db()?;
        Ok((info, key))
    }

    async fn list_environment_keys(&self, env: &str) -> Result<Vec<EnvironmentKeyInfo>> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM environment_keys WHERE environment_id = $1 ORDER BY id"
                ),
                &[&env],
            )
            .await
            .db()?;
        Ok(rows.iter().map(key_info).collect())
    }

    async fn revoke_environment_key(&self, env: &str, id: &str) -> Result<EnvironmentKeyInfo> {
        let c = self.client().await?;
        c.execute(
            "UPDATE environment_keys SET revoked_at = $3 WHERE environment_id = $1 AND id = $2 AND revoked_at IS NULL",
            &[&env, &id, &now()],
        )
        .await
        .db()?;
        let row = c
            .query_opt(
                &format!(
                    "SELECT {KEY_COLUMNS} FROM environment_keys WHERE environment_id = $1 AND id = $2"
                ),
                &[&env, &id],
            )
            .await
            .db()?
            .ok_or_else(|| Error::NotFound(format!("environment {env} has no key {id}")))?;
        Ok(key_info(&row))
    }

    async fn authenticate_environment_key(&self, key: &str) -> Result<Option<EnvironmentKeyOwner>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT workspace_id, environment_id FROM environment_keys WHERE hash = $1 AND revoked_at IS NULL",
                &[&hash(key)],
            )
            .await
            .db()?;
        Ok(row.map(|r| EnvironmentKeyOwner {
            workspace_id: r.get(0),
            environment_id: r.get(1),
        }))
    }
}
