//! SQLite storage, the embedded default: the session log and the resource catalog.
//!
//! Owns: every SQL statement agentd issues, the schema and its migrations, the writer thread.
//! Must not touch: HTTP, models, harness policy. The session log is exposed only through
//! `agentd_session::SessionLog`; the catalog (workspaces, keys, agents, environments, session
//! rows) through `Store`'s methods. A session row's status and usage are a projection of its
//! log, updated in the same transaction as the events that change them.

mod agents;
mod catalog;
mod db;
mod environments;
mod files;
mod keys;
mod log;
pub mod migrate;
mod sessions;
mod threads;
mod time;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub use agents::AgentFilter;
pub use files::NewFile;
pub use keys::{DEFAULT_WORKSPACE, KeyInfo, Workspace};
pub use sessions::{EventFilter, NewSession, SessionFilter};
pub use threads::ThreadRow;

/// Errors of the catalog. The API maps each variant to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("storage failure: {0}")]
    Storage(String),
    /// A session-log operation failed; kept typed so callers can tell refusals apart.
    #[error(transparent)]
    Log(#[from] agentd_session::Error),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Storage(format!("corrupt stored JSON: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A page of results and the cursor of the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Sort order of list endpoints that take `order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

#[derive(Clone)]
pub struct Store {
    db: db::Db,
    tails: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl Store {
    /// Open (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Store {
            db: db::Db::open(path)?,
            tails: Arc::default(),
        })
    }
}

/// Fetch one more row than asked so the page knows whether another follows.
fn paginate<T>(mut rows: Vec<T>, limit: usize, cursor: impl Fn(&T) -> String) -> Page<T> {
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(cursor)
    } else {
        None
    };
    Page { items: rows, next }
}

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod tests;
