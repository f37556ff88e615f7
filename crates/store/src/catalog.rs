//! `agentd_session::Catalog` on SQLite: the rows the harness reads, by log id.

use async_trait::async_trait;

use agentd_session::catalog::{Catalog, Error, ThreadInfo};
use agentd_wire::agent::SessionAgent;
use agentd_wire::environment::EnvironmentConfig;

use agentd_catalog::ThreadRow;

use crate::Store;

impl Store {
    /// The session a log belongs to.
    async fn session_of(&self, log_id: &str) -> Result<String, Error> {
        if !is_thread(log_id) {
            return Ok(log_id.to_owned());
        }
        Ok(self.thread_row(log_id).await?.session_id)
    }

    /// The row of the worker thread whose log `log_id` is; a thread that is gone is, to the
    /// harness, a session that is gone.
    async fn thread_row(&self, log_id: &str) -> Result<ThreadRow, Error> {
        self.thread(log_id)
            .await
            .map_err(|e| catalog_error(e, log_id))
    }
}

fn is_thread(log_id: &str) -> bool {
    log_id.starts_with(agentd_wire::ids::Kind::Thread.prefix())
}

fn catalog_error(e: crate::Error, id: &str) -> Error {
    match e {
        crate::Error::NotFound(_) => Error::NotFound(id.to_owned()),
        e => Error::Storage(e.to_string()),
    }
}

#[async_trait]
impl Catalog for Store {
    async fn session_agent(&self, log_id: &str) -> Result<SessionAgent, Error> {
        if is_thread(log_id) {
            return Ok(self.thread_row(log_id).await?.agent);
        }
        let session = self.load_session(log_id).await;
        Ok(session.map_err(|e| catalog_error(e, log_id))?.agent)
    }

    async fn session_environment(&self, log_id: &str) -> Result<EnvironmentConfig, Error> {
        let storage = |e: crate::Error| Error::Storage(e.to_string());
        let session_id = self.session_of(log_id).await?;
        let s = self.load_session(&session_id).await.map_err(storage)?;
        Ok(self
            .load_environment(&s.environment_id)
            .await
            .map_err(storage)?
            .config)
    }

    async fn thread(&self, log_id: &str) -> Result<Option<ThreadInfo>, Error> {
        if !is_thread(log_id) {
            return Ok(None);
        }
        let t = self.thread_row(log_id).await?;
        let parent_log = if t.parent_thread_id == agentd_wire::ids::primary_thread(&t.session_id) {
            t.session_id.clone()
        } else {
            t.parent_thread_id.clone()
        };
        Ok(Some(ThreadInfo {
            id: t.id,
            session_id: t.session_id,
            parent_log,
            parent_thread_id: t.parent_thread_id,
            agent_name: t.agent_name,
            archived: t.archived,
        }))
    }
}
