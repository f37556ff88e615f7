//! The catalog as the harness reads it: what a log runs (the pinned agent version, the
//! environment) and, for a worker thread, where it sits in its session. The log holds the
//! conversation; the catalog holds the configuration the conversation runs under. Also what
//! the log records of a change to the catalog.

use std::collections::BTreeMap;

use async_trait::async_trait;

use agentd_wire::EventBody;
use agentd_wire::agent::SessionAgent;
use agentd_wire::environment::EnvironmentConfig;

use crate::NewEvent;

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

    /// The output files collected so far for session `session_id`: one per path, those deleted
    /// through the API since included (their bytes are not collected again).
    async fn outputs(&self, session_id: &str) -> Result<Vec<CollectedOutput>, Error>;

    /// Store `out` as a Files API file scoped to session `session_id` (in the session's
    /// workspace), in one transaction: the file that held its path before, if any, goes, and
    /// the new one takes its place under a new id. A path that already holds the same bytes
    /// (by `sha256`) is left as it is, so collecting again after a crash adds nothing; so is
    /// one whose file with those bytes was deleted.
    async fn put_output(&self, session_id: &str, out: NewOutput) -> Result<(), Error>;

    /// The resources of session `session_id` as its next sandbox mounts them: its files with
    /// their bytes (one whose file was deleted since is left out) and its repositories with
    /// their sealed tokens.
    async fn session_mounts(&self, session_id: &str) -> Result<Mounts, Error>;

    /// The workspace of the log's session and the vaults it was created with, in order: what
    /// the edge (`agentd_vault::Resolver`) looks a credential up in.
    async fn session_vaults(&self, log_id: &str) -> Result<SessionVaults, Error>;

    /// Make sure the session of log `log_id`, whose environment is `self_hosted`, has a live
    /// work item for a worker to claim. Durable when it returns.
    async fn queue_session_work(&self, log_id: &str) -> Result<WorkQueued, Error>;
}

/// What a new sandbox of a session mounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    pub files: Vec<MountedFile>,
    pub repositories: Vec<MountedRepository>,
}

/// A repository resource as a sandbox clones it: its token is still sealed (the vault key
/// opens it, with the resource id as associated data).
#[derive(Clone, PartialEq, Eq)]
pub struct MountedRepository {
    pub resource_id: String,
    pub url: String,
    pub checkout: Option<agentd_wire::resource::Checkout>,
    pub mount_path: String,
    pub sealed_token: Option<Vec<u8>>,
}

impl std::fmt::Debug for MountedRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountedRepository")
            .field("resource_id", &self.resource_id)
            .field("url", &self.url)
            .field("mount_path", &self.mount_path)
            .field("token", &self.sealed_token.as_ref().map(|_| "<sealed>"))
            .finish_non_exhaustive()
    }
}

/// A file resource as a sandbox mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedFile {
    pub resource_id: String,
    pub mount_path: String,
    pub bytes: Vec<u8>,
}

/// What `Catalog::queue_session_work` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkQueued {
    /// This call queued the item.
    Queued,
    /// The session already had a live item.
    Live,
    /// The session is archived: its workers were asked to stop, and no work is queued for it.
    Archived,
}

/// Where a session's credentials are: its workspace and its `vault_ids`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionVaults {
    pub workspace_id: String,
    pub vault_ids: Vec<String>,
}

/// A file collected from a session's outputs, as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedOutput {
    /// Relative to the outputs directory, `/`-separated.
    pub path: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
}

/// A file found in a session's outputs, to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutput {
    /// Relative to the outputs directory, `/`-separated; also the file's name.
    pub path: String,
    pub mime_type: String,
    pub sha256: String,
    pub content: Vec<u8>,
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
    /// Storing it would pass the workspace's Files API quota (`FilesQuota`).
    #[error("{0}")]
    Quota(String),
}

/// What a workspace may keep in the Files API, uploads and collected outputs together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilesQuota {
    pub bytes: u64,
    pub files: u64,
}

impl Default for FilesQuota {
    fn default() -> Self {
        FilesQuota {
            bytes: 10 << 30,
            files: 10_000,
        }
    }
}

impl FilesQuota {
    /// Whether a workspace holding `used` (bytes, files) may add a file of `size` bytes in
    /// place of `freed` (bytes, files); the error says what to do.
    pub fn admits(&self, used: (u64, u64), size: u64, freed: (u64, u64)) -> Result<(), String> {
        let bytes = used.0.saturating_sub(freed.0) + size;
        let files = used.1.saturating_sub(freed.1) + 1;
        if bytes > self.bytes {
            return Err(format!(
                "this workspace's files would take {bytes} bytes, over its quota of {} bytes: delete files with files.delete first",
                self.bytes
            ));
        }
        if files > self.files {
            return Err(format!(
                "this workspace would hold {files} files, over its quota of {}: delete files with files.delete first",
                self.files
            ));
        }
        Ok(())
    }
}

/// A change to a session's title or metadata: the row's new values and the event that logs
/// them, in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionChange {
    pub title: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub event: NewEvent,
}

/// What an update does to a session now titled `title` with `metadata`: `title` replaces the
/// title when given, `patch` merges into the metadata (a null value removes its key). None
/// when nothing changes, and then nothing is logged.
pub fn session_update(
    title: &Option<String>,
    metadata: &BTreeMap<String, String>,
    new_title: Option<Option<String>>,
    patch: Option<BTreeMap<String, Option<String>>>,
) -> Option<SessionChange> {
    let new_title = new_title.unwrap_or_else(|| title.clone());
    let mut new_meta = metadata.clone();
    if let Some(p) = patch {
        agentd_wire::agent::merge_metadata(&mut new_meta, p);
    }
    if new_title == *title && new_meta == *metadata {
        return None;
    }
    let event = NewEvent::new(EventBody::SessionUpdated {
        title: new_title.clone(),
        metadata: Some(new_meta.clone()),
    });
    Some(SessionChange {
        title: new_title,
        metadata: new_meta,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_that_changes_nothing_logs_nothing() {
        let meta = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        let title = Some("t".to_owned());
        assert_eq!(session_update(&title, &meta, None, None), None);
        let same = BTreeMap::from([("k".to_owned(), Some("v".to_owned()))]);
        assert_eq!(
            session_update(&title, &meta, Some(title.clone()), Some(same)),
            None
        );
    }

    #[test]
    fn a_patch_merges_and_the_event_carries_the_result() {
        let meta = BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ]);
        let patch = BTreeMap::from([
            ("a".to_owned(), None),
            ("c".to_owned(), Some("3".to_owned())),
        ]);
        let c = session_update(&None, &meta, None, Some(patch)).unwrap();
        let want = BTreeMap::from([
            ("b".to_owned(), "2".to_owned()),
            ("c".to_owned(), "3".to_owned()),
        ]);
        assert_eq!((c.title.as_deref(), &c.metadata), (None, &want));
        let EventBody::SessionUpdated { title, metadata } = &c.event.body else {
            panic!("{:?}", c.event.body);
        };
        assert_eq!((title, metadata.as_ref()), (&None, Some(&want)));
    }
}
