//! The brain: a stateless harness. `wake(session)` reads the log, rebuilds the model's
//! context, calls the model, and appends what happened.
//!
//! Owns: the fold from log to context (`context`), the turn loop with retries and
//! interrupts (`harness`), the scheduler that runs one wake per session at a time
//! (`runner`), and live previews of messages still streaming (`previews`). Must not touch:
//! SQL, HTTP serving, upstream wire formats. Holds nothing the log cannot rebuild: kill the
//! process at any line and the next `wake` carries on from the last durable event.

mod compaction;
pub mod context;
mod harness;
pub mod outcomes;
mod packages;
pub mod previews;
mod runner;
pub mod sandboxes;
mod threads;

use async_trait::async_trait;

pub use harness::{Compaction, Harness, HarnessConfig, RetryPolicy};
pub use previews::{Previews, Published};
pub use runner::Runner;
pub use sandboxes::Sandboxes;

use agentd_wire::environment::EnvironmentConfig;
use agentd_wire::session::SessionAgent;

/// Where the harness learns which agent version a log runs. The log holds the conversation;
/// the catalog holds the pinned configuration. `log_id` is a session's id (its primary
/// thread) or a child thread's.
#[async_trait]
pub trait Agents: Send + Sync + 'static {
    /// The agent the log's thread runs: the session's, or the roster member a thread started.
    async fn session_agent(&self, log_id: &str) -> Result<SessionAgent, Error>;

    /// The configuration of the environment the log's session runs in (its network policy).
    async fn session_environment(&self, log_id: &str) -> Result<EnvironmentConfig, Error>;

    /// The child thread whose log `log_id` is; None for a session's own log.
    async fn thread(&self, log_id: &str) -> Result<Option<ThreadInfo>, Error>;
}

/// A child thread, as the harness needs to know it.
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
    #[error(transparent)]
    Log(#[from] agentd_session::Error),
    #[error("session {0} not found")]
    SessionNotFound(String),
    #[error("{0}")]
    Catalog(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
