//! The brain: a stateless harness. `wake(session)` reads the log, rebuilds the model's
//! context, calls the model, and appends what happened.
//!
//! Owns: the fold from log to context (`context`), the turn loop with retries and
//! interrupts (`harness`), the scheduler that runs one wake per session at a time
//! (`runner`), and live previews of messages still streaming (`previews`). Must not touch:
//! SQL, HTTP serving, upstream wire formats. Holds nothing the log cannot rebuild: kill the
//! process at any line and the next `wake` carries on from the last durable event.

pub mod context;
mod harness;
pub mod outcomes;
mod packages;
pub mod previews;
mod runner;
pub mod sandboxes;
mod threads;
mod tool_name;

pub use agentd_session::catalog::{Catalog, ThreadInfo};
pub use harness::{Compaction, Harness, HarnessConfig, RetryPolicy};
pub use previews::{Previews, Published};
pub use runner::Runner;
pub use sandboxes::Sandboxes;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Log(#[from] agentd_session::Error),
    #[error("session {0} not found")]
    SessionNotFound(String),
    #[error("{0}")]
    Catalog(String),
}

impl From<agentd_session::catalog::Error> for Error {
    fn from(e: agentd_session::catalog::Error) -> Self {
        match e {
            agentd_session::catalog::Error::NotFound(id) => Error::SessionNotFound(id),
            agentd_session::catalog::Error::Storage(m) => Error::Catalog(m),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
