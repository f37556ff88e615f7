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

use async_trait::async_trait;

pub use harness::{Compaction, Harness, HarnessConfig, RetryPolicy};
pub use previews::{Previews, Published};
pub use runner::Runner;
pub use sandboxes::Sandboxes;

use agentd_wire::environment::EnvironmentConfig;
use agentd_wire::session::SessionAgent;

/// Where the harness learns which agent version a session runs. The log holds the
/// conversation; the catalog holds the pinned configuration.
#[async_trait]
pub trait Agents: Send + Sync + 'static {
    async fn session_agent(&self, session_id: &str) -> Result<SessionAgent, Error>;

    /// The configuration of the environment the session runs in (its network policy).
    async fn session_environment(&self, session_id: &str) -> Result<EnvironmentConfig, Error>;
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
