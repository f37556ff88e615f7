//! What every handler shares.

use std::sync::Arc;

use async_trait::async_trait;

use agentd_brain::{Agents, Previews, Runner};
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

#[async_trait]
impl Agents for StoreAgents {
    async fn session_agent(&self, session_id: &str) -> agentd_brain::Result<SessionAgent> {
        match self.0.load_session(session_id).await {
            Ok(s) => Ok(s.agent),
            Err(agentd_store::Error::NotFound(_)) => {
                Err(agentd_brain::Error::SessionNotFound(session_id.to_owned()))
            }
            Err(e) => Err(agentd_brain::Error::Catalog(e.to_string())),
        }
    }

    async fn session_environment(
        &self,
        session_id: &str,
    ) -> agentd_brain::Result<EnvironmentConfig> {
        let catalog = |e: agentd_store::Error| agentd_brain::Error::Catalog(e.to_string());
        let s = self.0.load_session(session_id).await.map_err(catalog)?;
        Ok(self
            .0
            .load_environment(&s.environment_id)
            .await
            .map_err(catalog)?
            .config)
    }
}
