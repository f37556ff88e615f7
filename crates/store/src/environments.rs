//! Environments: stored whole as JSON, with the columns lists filter on.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use agentd_catalog::{EnvironmentEdit, EnvironmentMake, Environments};
use agentd_wire::environment::{Environment, EnvironmentTag};
use agentd_wire::ids::{self, Kind};

use crate::{Error, Page, Result, Store, time};

fn get_in(c: &Connection, ws: &str, id: &str) -> Result<Environment> {
    get_opt_ws(c, Some(ws), id)
}

fn get_opt_ws(c: &Connection, ws: Option<&str>, id: &str) -> Result<Environment> {
    let body: String = c
        .query_row(
            "SELECT body FROM environments WHERE (?1 IS NULL OR workspace_id = ?1) AND id = ?2",
            params![ws, id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("environment {id} not found")))?;
    Ok(serde_json::from_str(&body)?)
}

fn put(c: &Connection, env: &Environment) -> Result<()> {
    c.execute(
        "UPDATE environments SET body = ?2, updated_at = ?3, archived_at = ?4 WHERE id = ?1",
        params![
            env.id,
            serde_json::to_string(env)?,
            time::fmt(&env.updated_at),
            env.archived_at.as_ref().map(time::fmt)
        ],
    )?;
    Ok(())
}

#[async_trait]
impl Environments for Store {
    async fn create_environment(&self, ws: &str, make: EnvironmentMake) -> Result<Environment> {
        let ws = ws.to_owned();
        self.db
            .write(move |c| {
                let env = make(ids::new(Kind::Environment), time::now());
                debug_assert_eq!(env.kind, EnvironmentTag::Environment);
                let now = time::fmt(&env.created_at);
                c.execute(
                    "INSERT INTO environments (id, workspace_id, body, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                    params![env.id, ws, serde_json::to_string(&env)?, now],
                )?;
                Ok(env)
            })
            .await
    }

    async fn get_environment(&self, ws: &str, id: &str) -> Result<Environment> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db.read(move |c| get_in(c, &ws, &id)).await
    }

    async fn update_environment(
        &self,
        ws: &str,
        id: &str,
        f: EnvironmentEdit,
    ) -> Result<Environment> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db
            .write(move |c| {
                let before = get_in(c, &ws, &id)?;
                let mut env = before.clone();
                f(&mut env)?;
                if env != before {
                    env.updated_at = time::now();
                    put(c, &env)?;
                }
                Ok(env)
            })
            .await
    }

    async fn archive_environment(&self, ws: &str, id: &str) -> Result<Environment> {
        self.update_environment(
            ws,
            id,
            Box::new(|env| {
                if env.archived_at.is_none() {
                    env.archived_at = Some(time::now());
                }
                Ok(())
            }),
        )
        .await
    }

    async fn delete_environment(&self, ws: &str, id: &str) -> Result<()> {
        let (ws, id) = (ws.to_owned(), id.to_owned());
        self.db
            .write(move |c| {
                get_in(c, &ws, &id)?;
                let in_use: i64 = c.query_row(
                    "SELECT COUNT(*) FROM sessions WHERE environment_id = ?1 AND status != 'terminated'",
                    [&id],
                    |r| r.get(0),
                )?;
                if in_use > 0 {
                    return Err(Error::Conflict(format!(
                        "environment {id} is used by {in_use} session(s); delete or terminate them first, or archive the environment"
                    )));
                }
                c.execute("DELETE FROM environments WHERE id = ?1", [&id])?;
                Ok(())
            })
            .await
    }

    async fn list_environments(
        &self,
        ws: &str,
        include_archived: bool,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<Environment>> {
        let ws = ws.to_owned();
        self.db
            .read(move |c| {
                crate::list_bodies(
                    c,
                    "environments",
                    &ws,
                    include_archived,
                    (limit, page),
                    |x: &Environment| x.id.clone(),
                )
            })
            .await
    }
}

impl Store {
    /// An environment in any workspace: for the harness, which acts for whoever owns it.
    pub async fn load_environment(&self, id: &str) -> Result<Environment> {
        let id = id.to_owned();
        self.db.read(move |c| get_opt_ws(c, None, &id)).await
    }
}
