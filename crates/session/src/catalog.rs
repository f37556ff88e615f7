//! The catalog as the harness reads it: what a log runs (the pinned agent version, the
//! environment) and, for a worker thread, where it sits in its session. The log holds the
//! conversation; the catalog holds the configuration the conversation runs under.

use async_trait::async_trait;

use agentd_wire::agent::SessionAgent;
use agentd_wire::environment::EnvironmentConfig;

/// Read-only views of the catalog keyed by log id: a session's id (its primary thread's log)
/// or a worker thread's `sthr_…` id. Implemented by each storage backend.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// The agent the log's thread runs: the session's, or the roster member a thread started.
    async fn session_agent(&self, log_id: &str) -> Result<SessionAgent, Error>;

    /// The configuration of the environment the log's session runs in (its network policy).
    async fn session_environment(&self, log_id: &str) -> Result<EnvironmentConfig, Error>;

    /// The worker thread whose log `log_id` is; None for a session's own log.
    async fn thread(&self, log_id: &str) -> Result<Option<ThreadInfo>, Error>;
}

/// A worker thread, as the harness needs to know it.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadInfo {
    pub id: String,
    pub session_id: String,
    /// The log of the thread that started it, where its replies go.
    pub parent_log: String,
    pub parent_thread_id: String,
    pub agent_name: String,
    pub archived: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log's session (or thread) is gone: a wake for it has nothing to do.
    #[error("session {0} not found")]
    NotFound(String),
    #[error("catalog: {0}")]
    Storage(String),
}
