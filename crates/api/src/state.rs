//! What every handler shares.

use std::sync::Arc;

use async_trait::async_trait;

use agentd_brain::{Agents, Previews, Runner, ThreadInfo};
use agentd_models::Registry;
use agentd_store::Store;
use agentd_wire::environment::EnvironmentConfig;
use agentd_wire::session::SessionAgent;

use crate::auth::{KeyCache, RateLimit};

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub runner: Runner,
    pub previews: Previews,
    pub models: Arc<Registry>,
    pub(crate) keys: KeyCache,
}

impl AppState {
    pub fn new(
        store: Store,
        runner: Runner,
        previews: Previews,
        models: Arc<Registry>,
        rate: RateLimit,
    ) -> Self {
        AppState {
            store,
            runner,
            previews,
            models,
            keys: KeyCache::new(rate),
        }
    }
}

/// The catalog as the harness sees it: which agent version a session is pinned to.
pub struct StoreAgents(pub Store);

impl StoreAgents {
    /// The session a log belongs to.
    async fn session_of(&self, log_id: &str) -> agentd_brain::Result<String> {
        if !is_thread(log_id) {
            return Ok(log_id.to_owned());
        }
        Ok(self.thread_row(log_id).await?.session_id)
    }

    /// The row of the child thread whose log `log_id` is; a thread that is gone is, to the
    /// harness, a session that is gone.
    async fn thread_row(&self, log_id: &str) -> agentd_brain::Result<agentd_store::ThreadRow> {
        match self.0.thread(log_id).await {
            Ok(t) => Ok(t),
            Err(agentd_store::Error::NotFound(_)) => {
                Err(agentd_brain::Error::SessionNotFound(log_id.to_owned()))
            }
            Err(e) => Err(agentd_brain::Error::Catalog(e.to_string())),
        }
    }
}

fn is_thread(log_id: &str) -> bool {
    log_id.starts_with(agentd_wire::ids::Kind::Thread.prefix())
}

#[async_trait]
impl Agents for StoreAgents {
    async fn session_agent(&self, log_id: &str) -> agentd_brain::Result<SessionAgent> {
        if is_thread(log_id) {
            return Ok(self.thread_row(log_id).await?.agent);
        }
        let session_id = log_id;
        match self.0.load_session(session_id).await {
            Ok(s) => Ok(s.agent),
            Err(agentd_store::Error::NotFound(_)) => {
                Err(agentd_brain::Error::SessionNotFound(session_id.to_owned()))
            }
            Err(e) => Err(agentd_brain::Error::Catalog(e.to_string())),
        }
    }

    async fn session_environment(&self, log_id: &str) -> agentd_brain::Result<EnvironmentConfig> {
        let catalog = |e: agentd_store::Error| agentd_brain::Error::Catalog(e.to_string());
        let session_id = self.session_of(log_id).await?;
        let s = self.0.load_session(&session_id).await.map_err(catalog)?;
        Ok(self
            .0
            .load_environment(&s.environment_id)
            .await
            .map_err(catalog)?
            .config)
    }

    async fn thread(&self, log_id: &str) -> agentd_brain::Result<Option<ThreadInfo>> {
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
