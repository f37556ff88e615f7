//! The storage interface of the resource catalog: the traits a backend implements for keys,
//! agents, environments, sessions, threads, files and vaults, and the filters, pages and errors they
//! speak. `Storage` is all of it plus the session log (`agentd_session::SessionLog`) and the
//! harness's read view (`agentd_session::Catalog`): what the API and the binary hold.
//!
//! Owns: the catalog's method signatures and the backend-neutral types they take and return.
//! Must not touch: SQL (the backends — `agentd-store`, `agentd-postgres` — issue it), HTTP.

pub mod by_log;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod cursor;
pub mod keys;
pub mod resources;
pub mod rules;
mod traits;
mod types;
pub mod work;

pub use agentd_session::catalog::FilesQuota;
pub use traits::{
    Agents, Environments, Files, Keys, Sessions, Storage, Threads, Vaults, WorkQueue,
};
pub use types::{
    AgentEdit, AgentFilter, CredentialEdit, CredentialMake, DEFAULT_WORKSPACE, EnvironmentEdit,
    EnvironmentMake, EventFilter, KeyInfo, NewFile, NewSession, Order, Page, Reseal, SessionFilter,
    StoredCredential, ThreadRow, VaultEdit, VaultMake, Workspace,
};

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
    /// See `agentd_session::Error::Unavailable`.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A session-log operation failed; kept typed so callers can tell refusals apart.
    #[error(transparent)]
    Log(#[from] agentd_session::Error),
}

#[cfg(feature = "rusqlite")]
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::from_sqlite(&e)
    }
}

impl Error {
    /// The error a SQLite failure is to its callers; by reference, for a failed group commit
    /// that every job in it must hear about.
    #[cfg(feature = "rusqlite")]
    pub fn from_sqlite(e: &rusqlite::Error) -> Self {
        // A full disk refuses writes until an operator frees space: a pause, not a bug.
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Error::Unavailable(e.to_string()),
            _ => Error::Storage(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Storage(format!("corrupt stored JSON: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
