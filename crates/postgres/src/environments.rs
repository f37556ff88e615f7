//! Environments: stored whole as JSON, with the columns lists filter on.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;

use agentd_catalog::{EnvironmentEdit, EnvironmentMake, Environments, Error, Page, Result};
use agentd_wire::environment::{Environment, EnvironmentTag};
use agentd_wire::ids::{self, Kind};

use crate::{Db, PgStore, json, log::now};

/// The environment `id`, in workspace `ws` or (for the harness) any; locked until the
/// transaction ends with `lock`.
pub(crate) async fn get(
    c: &impl GenericClient,
    ws: Option<&str>,
    id: &str,
    lock: &str,
) -> Result<Environment> {
    let sql = format!(
        "SELECT body::text FROM environments WHERE ($1::text IS NULL OR workspace_id = $1) AND id = $2 {lock}"
    );
    let row = c
        .query_opt(&sql, &[&ws, &id])
        .await
        .db()?
        .ok_or_else(|| Error::NotFound(format!("environment {id} not found")))?;
    json(row.get(0))
}

#[async_trait]
impl Environments for PgStore {
    async fn create_environment(&self, ws: &str, make: EnvironmentMake) -> Result<Environment> {
        let env = make(ids::new(Kind::Environment), now());
        debug_assert_eq!(env.kind, EnvironmentTag::Environment);
        self.client()
            .await?
            .execute(
                "INSERT INTO environments (id, workspace_id, body, created_at, updated_at) VALUES ($1, $2, $3::text::json, $4, $4)",
                &[&env.id, &ws, &serde_json::to_string(&env)?, &env.created_at],
            )
            .await
            .db()?;
        Ok(env)
    }

    async fn get_environment(&self, ws: &str, id: &str) -> Result<Environment> {
        get(&self.client().await?, Some(ws), id, "").await
    }

    async fn update_environment(
        &self,
        ws: &str,
        id: &str,
        f: EnvironmentEdit,
    ) -> Result<Environment> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        let before = get(&tx, Some(ws), id, "FOR UPDATE").await?;
        let mut env = before.clone();
        f(&mut env)?;
        if env != before {
            env.updated_at = now();
            tx.execute(
                "UPDATE environments SET body = $2::text::json, updated_at = $3, archived_at = $4 WHERE id = $1",
                &[&env.id, &serde_json::to_string(&env)?, &env.updated_at, &env.archived_at],
            )
            .await
            .db()?;
        }
        tx.commit().await.db()?;
        Ok(env)
    }

    async fn archive_environment(&self, ws: &str, id: &str) -> Result<Environment> {
        self.update_environment(
            ws,
            id,
            Box::new(|env| {
                if env.archived_at.is_none() {
                    env.archived_at = Some(now());
                }
                Ok(())
            }),
        )
        .await
    }

    async fn delete_environment(&self, ws: &str, id: &str) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.db()?;
        // Held against a session being created in it meanwhile (which takes it FOR SHARE).
        get(&tx, Some(ws), id, "FOR UPDATE").await?;
        let in_use: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM sessions WHERE environment_id = $1 AND status != 'terminated'",
                &[&id],
            )
            .await
            .db()?
            .get(0);
        if in_use > 0 {
            return Err(Error::Conflict(format!(
                "environment {id} is used by {in_use} session(s); delete or terminate them first, or archive the environment"
            )));
        }
        tx.execute("DELETE FROM environments WHERE id = $1", &[&id])
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(())
    }

    async fn list_environments(
        &self,
        ws: &str,
        include_archived: bool,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<Environment>> {
        self.list_bodies(
            "environments",
            ws,
            include_archived,
            (limit, page),
            |x: &Environment| x.id.clone(),
        )
        .await
    }
}
