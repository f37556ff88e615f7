//! The brain: a stateless harness. `wake(log)` reads a log (a session's, or a worker
//! thread's), rebuilds the model's context, calls the model, and appends what happened.
//!
//! Owns:
//! - `context`: the pure fold from a log to the model's messages and what to do next, one
//!   sub-state per concern (the message builder, open built-in calls, the outcome loop, threads);
//! - `harness`: `wake`, one file per phase — `turn` (a model request, streamed with previews,
//!   and its events), `tools` (the toolbox, permissions, running built-in and thread calls),
//!   `evaluation` (grading an outcome), `compaction` (summarising older turns), and `retry`
//!   (the one backoff the turn, the grader and compaction share);
//! - `outcomes`: the pure parts of grading (prompts, verdicts, checks); `threads`: the events
//!   that start and message worker threads; `tool_name`: tool names, parsed once;
//! - `runner`: the scheduler that runs one wake per log at a time; `previews`: live previews of
//!   messages still streaming; `sandboxes`: per-log sandboxes over a session's workspace,
//!   under the caps `admission` keeps;
//!   `packages`: an environment's packages; `outputs`: collecting the files a session's agent
//!   left in `/mnt/session/outputs/` into the Files API.
//!
//! Must not touch: SQL, HTTP serving, upstream wire formats. Holds nothing the log cannot
//! rebuild: kill the process at any line and the next `wake` carries on from the last durable
//! event.

mod admission;
pub mod context;
mod harness;
pub mod outcomes;
pub mod outputs;
mod packages;
pub mod previews;
pub mod repositories;
mod runner;
pub mod sandboxes;
mod threads;
mod tool_name;

pub use agentd_session::catalog::{Catalog, ThreadInfo};
pub use harness::{Compaction, Harness, HarnessConfig, RetryPolicy};
pub use previews::{Previews, Published};
pub use runner::{DEFAULT_LEASE, Runner};
pub use sandboxes::Sandboxes;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Log(#[from] agentd_session::Error),
    #[error("session {0} not found")]
    SessionNotFound(String),
    /// Another process took the log's lease over: this one must stop working on it.
    #[error("another process now runs {0}")]
    Fenced(String),
    #[error("{0}")]
    Catalog(String),
}

impl From<agentd_session::catalog::Error> for Error {
    fn from(e: agentd_session::catalog::Error) -> Self {
        match e {
            agentd_session::catalog::Error::NotFound(id) => Error::SessionNotFound(id),
            agentd_session::catalog::Error::Storage(m)
            | agentd_session::catalog::Error::Quota(m) => Error::Catalog(m),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
