//! SQLite storage, the embedded default: the session log and the resource catalog.
//!
//! Owns: every SQL statement agentd issues, the schema and its migrations, the writer thread.
//! Must not touch: HTTP, models, harness policy. The session log is exposed only through
//! `agentd_session::SessionLog`; the catalog (workspaces, keys, agents, environments, sessions,
//! threads, files) only through the `agentd_catalog` traits, so `Store` is an
//! `agentd_catalog::Storage`. A session row's status and usage are a projection of its log,
//! updated in the same transaction as the events that change them.

mod agents;
mod catalog;
mod db;
mod environments;
mod files;
mod keys;
mod lease;
mod log;
pub mod migrate;
mod sessions;
mod threads;
mod time;
mod vaults;
mod work;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub(crate) use agentd_catalog::{Error, Page, Result};

/// A page of the JSON bodies of `table`'s rows in workspace `ws`, newest id first, the
/// archived ones on request: how environments and vaults are listed.
pub(crate) fn list_bodies<T: serde::de::DeserializeOwned>(
    c: &rusqlite::Connection,
    table: &'static str,
    ws: &str,
    include_archived: bool,
    (limit, page): (usize, Option<String>),
    id: impl Fn(&T) -> String,
) -> Result<Page<T>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT body FROM {table} WHERE workspace_id = ?1 AND (?2 OR archived_at IS NULL)
         AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4"
    ))?;
    let rows = st.query_map(
        rusqlite::params![ws, include_archived, page, (limit + 1) as i64],
        |r| r.get::<_, String>(0),
    )?;
    let mut out = Vec::new();
    for r in rows {
        out.push(serde_json::from_str::<T>(&r?)?);
    }
    Ok(Page::of(out, limit, id))
}

#[derive(Clone)]
pub struct Store {
    db: db::Db,
    tails: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
    held: lease::Held,
    files_quota: agentd_session::catalog::FilesQuota,
}

impl Store {
    /// Open (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Store {
            db: db::Db::open(path)?,
            tails: Arc::default(),
            held: lease::Held::default(),
            files_quota: Default::default(),
        })
    }

    /// What each workspace may keep in the Files API (uploads and collected outputs).
    pub fn with_files_quota(mut self, q: agentd_session::catalog::FilesQuota) -> Store {
        self.files_quota = q;
        self
    }
}

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod tests;
