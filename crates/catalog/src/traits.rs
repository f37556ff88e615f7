//! The catalog's traits, one per resource, and `Storage`, which is all of them.
//!
//! Every method is scoped by workspace (`ws`) unless it serves the process itself (startup,
//! key management). The doc comments state the behaviour a backend must keep.

use std::collections::BTreeMap;

use async_trait::async_trait;

use agentd_session::{Guard, SessionLog, StoredEvent};
use agentd_wire::agent::{Agent, AgentSpec};
use agentd_wire::environment::Environment;
use agentd_wire::file::FileMetadata;
use agentd_wire::resource::Resource;
use agentd_wire::thread::SessionThread;
use agentd_wire::vault::Vault;
use agentd_wire::{Session, SessionStatus};

use crate::work::{EnvironmentKeyInfo, EnvironmentKeyOwner, WorkChange, WorkItem};
use crate::{
    AgentEdit, AgentFilter, CredentialEdit, CredentialMake, EnvironmentEdit, EnvironmentMake,
    EventFilter, KeyInfo, NewFile, NewSession, Page, Reseal, Result, SessionFilter,
    StoredCredential, ThreadRow, VaultEdit, VaultMake, Workspace,
};

/// Workspaces and API keys. Keys are kept hashed; the plaintext is shown once.
#[async_trait]
pub trait Keys: Send + Sync {
    /// Register a key chosen by the operator (`AGENTD_API_KEY`); a no-op if it exists.
    async fn register_key(&self, key: &str, workspace: &str) -> Result<Workspace>;
    /// Mint a new random key in `workspace` (created if new); returns it in plaintext once.
    async fn create_key(&self, workspace: &str, name: Option<&str>) -> Result<(KeyInfo, String)>;
    /// The workspace a key belongs to, if the key is known.
    async fn authenticate(&self, key: &str) -> Result<Option<Workspace>>;
    async fn list_keys(&self) -> Result<Vec<KeyInfo>>;
}

/// Agents and their immutable versions.
#[async_trait]
pub trait Agents: Send + Sync {
    async fn create_agent(&self, ws: &str, spec: AgentSpec) -> Result<Agent>;
    async fn get_agent(&self, ws: &str, id: &str, version: Option<u32>) -> Result<Agent>;
    /// Make a new version from the latest one with `f`. `expected` guards against lost
    /// updates. Returns the agent and whether a new version was made: an update that
    /// changes nothing makes none.
    async fn update_agent(
        &self,
        ws: &str,
        id: &str,
        expected: Option<u32>,
        f: AgentEdit,
    ) -> Result<(Agent, bool)>;
    async fn archive_agent(&self, ws: &str, id: &str) -> Result<Agent>;
    /// Newest first; the cursor is the last agent id of the page.
    async fn list_agents(&self, ws: &str, f: AgentFilter) -> Result<Page<Agent>>;
    /// Versions newest first; the cursor is the last version number of the page.
    async fn list_agent_versions(
        &self,
        ws: &str,
        id: &str,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<Agent>>;
}

/// Environments.
#[async_trait]
pub trait Environments: Send + Sync {
    /// Store a new environment; `make` fills in everything but the id and timestamps.
    async fn create_environment(&self, ws: &str, make: EnvironmentMake) -> Result<Environment>;
    async fn get_environment(&self, ws: &str, id: &str) -> Result<Environment>;
    /// Apply `f` to the stored environment; `updated_at` moves only if something changed.
    async fn update_environment(
        &self,
        ws: &str,
        id: &str,
        f: EnvironmentEdit,
    ) -> Result<Environment>;
    async fn archive_environment(&self, ws: &str, id: &str) -> Result<Environment>;
    /// Delete an environment no session uses.
    async fn delete_environment(&self, ws: &str, id: &str) -> Result<()>;
    /// Newest first; the cursor is the last environment id of the page.
    async fn list_environments(
        &self,
        ws: &str,
        include_archived: bool,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<Environment>>;
}

/// Session rows and event queries. Appends go through `SessionLog`.
#[async_trait]
pub trait Sessions: Send + Sync {
    /// Create a session and append what `initial` returns in the same transaction.
    async fn create_session(&self, ws: &str, s: NewSession, initial: Guard) -> Result<Session>;
    async fn get_session(&self, ws: &str, id: &str) -> Result<Session>;
    /// Change title or metadata; a change is logged as `session.updated` in the same
    /// transaction.
    async fn update_session(
        &self,
        ws: &str,
        id: &str,
        title: Option<Option<String>>,
        metadata: Option<BTreeMap<String, Option<String>>>,
    ) -> Result<Session>;
    async fn archive_session(&self, ws: &str, id: &str) -> Result<Session>;
    /// Add a resource to session `id` (`crate::resources::add`, under the session's lock),
    /// with its sealed authorization token if it has one.
    async fn add_session_resource(
        &self,
        ws: &str,
        id: &str,
        r: Resource,
        sealed_token: Option<Vec<u8>>,
    ) -> Result<Session>;
    /// Replace the sealed authorization token of resource `rid` of session `id` (a
    /// repository's); its `updated_at` moves. Returns the resource.
    async fn set_resource_token(
        &self,
        ws: &str,
        id: &str,
        rid: &str,
        sealed_token: Vec<u8>,
    ) -> Result<Resource>;
    /// Remove resource `rid` of session `id`, and its token; returns it.
    async fn delete_session_resource(&self, ws: &str, id: &str, rid: &str) -> Result<Resource>;
    /// Remove a session and its whole log; its subscribers are told it is gone.
    async fn delete_session(&self, ws: &str, id: &str) -> Result<()>;
    /// Sessions whose status is `running`: the ones a restart must wake.
    async fn running_sessions(&self) -> Result<Vec<String>>;
    async fn list_sessions(&self, ws: &str, f: SessionFilter) -> Result<Page<Session>>;
    /// A page of the events of log `log_id` (the session's own, or one of its threads').
    async fn list_log_events(
        &self,
        ws: &str,
        sid: &str,
        log_id: &str,
        f: EventFilter,
    ) -> Result<Page<StoredEvent>>;
    /// The position of event `event_id` in log `log_id`, for resuming a stream.
    async fn event_position(&self, log_id: &str, event_id: &str) -> Result<Option<u64>>;
}

/// Thread rows: the catalog side of the threads a coordinator starts.
#[async_trait]
pub trait Threads: Send + Sync {
    /// The primary thread first, then the children in the order they were started.
    async fn list_threads(
        &self,
        ws: &str,
        sid: &str,
        statuses: Vec<SessionStatus>,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<SessionThread>>;
    async fn get_thread(&self, ws: &str, sid: &str, tid: &str) -> Result<SessionThread>;
    /// Archive a child thread: it takes no more messages. The primary thread is archived with
    /// its session.
    async fn archive_thread(&self, ws: &str, sid: &str, tid: &str) -> Result<SessionThread>;
    /// The log holding thread `tid`'s events, once the thread is known to belong to the
    /// session `sid` in workspace `ws`.
    async fn thread_log(&self, ws: &str, sid: &str, tid: &str) -> Result<String>;
    /// The child threads of a session, oldest first.
    async fn child_threads(&self, sid: &str) -> Result<Vec<ThreadRow>>;
    /// Child threads whose status is `running`: the ones a restart must wake.
    async fn running_threads(&self) -> Result<Vec<String>>;
}

/// Files: uploads, and the outputs a session's agent left (stored through
/// `agentd_session::Catalog::put_output`, scoped to their session).
#[async_trait]
pub trait Files: Send + Sync {
    async fn create_file(&self, ws: &str, f: NewFile) -> Result<FileMetadata>;
    async fn get_file(&self, ws: &str, id: &str) -> Result<FileMetadata>;
    async fn file_content(&self, ws: &str, id: &str) -> Result<(FileMetadata, Vec<u8>)>;
    /// Newest first; the cursor is the last id of the previous page. With `scope_id`, only
    /// the files scoped to it (a session's outputs); a scope of another workspace has none.
    async fn list_files(
        &self,
        ws: &str,
        scope_id: Option<&str>,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<FileMetadata>>;
    async fn delete_file(&self, ws: &str, id: &str) -> Result<()>;
}

/// The work queue of `self_hosted` environments and their keys (`crate::work`).
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Queue `item` unless its session already has a live (not stopped) item; returns the
    /// session's live item and whether it is the new one. Two callers at once make one item.
    /// The item's workspace is its session's, whatever `item` says.
    async fn queue_work(&self, item: WorkItem) -> Result<(WorkItem, bool)>;
    async fn get_work(&self, id: &str) -> Result<WorkItem>;
    /// Apply `f` to item `id` under its row lock, storing the result when `f` returns true.
    /// Returns the item as it stands afterwards and whether it was changed.
    async fn update_work(&self, id: &str, f: WorkChange) -> Result<(WorkItem, bool)>;
    /// An environment's items, newest first; the cursor is the last id of the page.
    async fn list_work(
        &self,
        env: &str,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<WorkItem>>;
    /// Live items, oldest first: of environment `env`, or of every environment.
    async fn live_work(&self, env: Option<&str>) -> Result<Vec<WorkItem>>;
    /// Session `sid`'s items, oldest first.
    async fn session_work(&self, sid: &str) -> Result<Vec<WorkItem>>;
    /// Mint a key for environment `env`; returns it in plaintext once.
    async fn create_environment_key(
        &self,
        env: &str,
        name: Option<&str>,
    ) -> Result<(EnvironmentKeyInfo, String)>;
    /// Keys of environment `env`, revoked ones too, oldest first.
    async fn list_environment_keys(&self, env: &str) -> Result<Vec<EnvironmentKeyInfo>>;
    /// Revoke key `id` of environment `env`; revoking twice is not an error.
    async fn revoke_environment_key(&self, env: &str, id: &str) -> Result<EnvironmentKeyInfo>;
    /// What an unrevoked environment key is for, if `key` is one.
    async fn authenticate_environment_key(&self, key: &str) -> Result<Option<EnvironmentKeyOwner>>;
    /// Worker `worker` polled environment `env` at `at_ms` (Unix milliseconds); polls older
    /// than `forget_before_ms` are dropped.
    async fn saw_poller(
        &self,
        env: &str,
        worker: &str,
        at_ms: i64,
        forget_before_ms: i64,
    ) -> Result<()>;
    /// How many workers polled environment `env` since `since_ms`.
    async fn pollers(&self, env: &str, since_ms: i64) -> Result<u64>;
}

/// Vaults and their credentials. Secrets arrive sealed (`StoredCredential::sealed`) and are
/// kept as opaque bytes; sealing and opening is `agentd-vault`'s.
#[async_trait]
pub trait Vaults: Send + Sync {
    async fn create_vault(&self, ws: &str, make: VaultMake) -> Result<Vault>;
    async fn get_vault(&self, ws: &str, id: &str) -> Result<Vault>;
    /// Apply `f`; `updated_at` moves only if something changed. An archived vault is refused.
    async fn update_vault(&self, ws: &str, id: &str, f: VaultEdit) -> Result<Vault>;
    /// Archive a vault and every credential in it, dropping their sealed secrets; a second
    /// archive changes nothing.
    async fn archive_vault(&self, ws: &str, id: &str) -> Result<Vault>;
    /// Delete a vault and its credentials.
    async fn delete_vault(&self, ws: &str, id: &str) -> Result<()>;
    /// Newest first; the cursor is the last vault id of the page.
    async fn list_vaults(
        &self,
        ws: &str,
        include_archived: bool,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<Vault>>;
    /// Store a credential in a live vault. A live credential with the same
    /// `StoredCredential::match_key` in the vault is a conflict.
    async fn create_credential(
        &self,
        ws: &str,
        vault: &str,
        make: CredentialMake,
    ) -> Result<StoredCredential>;
    async fn get_credential(&self, ws: &str, vault: &str, id: &str) -> Result<StoredCredential>;
    /// Apply `f` under the row's lock; `updated_at` moves only if something changed. An
    /// archived credential is refused.
    async fn update_credential(
        &self,
        ws: &str,
        vault: &str,
        id: &str,
        f: CredentialEdit,
    ) -> Result<StoredCredential>;
    /// Archive a credential, dropping its sealed secrets; a second archive changes nothing.
    async fn archive_credential(&self, ws: &str, vault: &str, id: &str)
    -> Result<StoredCredential>;
    async fn delete_credential(&self, ws: &str, vault: &str, id: &str) -> Result<()>;
    /// Newest first; the cursor is the last credential id of the page.
    async fn list_credentials(
        &self,
        ws: &str,
        vault: &str,
        include_archived: bool,
        limit: usize,
        page: Option<String>,
    ) -> Result<Page<StoredCredential>>;
    /// The stored key check value: a known plaintext sealed with the vault key.
    async fn vault_key_check(&self) -> Result<Option<Vec<u8>>>;
    /// Store `check` unless one is stored; returns the one stored afterwards.
    async fn init_vault_key_check(&self, check: Vec<u8>) -> Result<Vec<u8>>;
    /// Reseal every credential's secrets and every repository resource's token with `f` and
    /// store the new key's `check`, all in one transaction: a failure anywhere leaves every
    /// secret under the old key. Returns how many values were resealed.
    async fn reseal_credentials(&self, f: Reseal, check: Vec<u8>) -> Result<u64>;
}

/// A whole backend: the session log, the harness's read view, the leases and the catalog. The API and
/// the binary hold an `Arc<dyn Storage>`; anything implementing the parts is one.
pub trait Storage:
    SessionLog
    + agentd_session::catalog::Catalog
    + agentd_session::lease::Leases
    + Keys
    + Agents
    + Environments
    + Sessions
    + Threads
    + Files
    + WorkQueue
    + Vaults
    + Send
    + Sync
{
}

impl<T> Storage for T where
    T: SessionLog
        + agentd_session::catalog::Catalog
        + agentd_session::lease::Leases
        + Keys
        + Agents
        + Environments
        + Sessions
        + Threads
        + Files
        + WorkQueue
        + Vaults
        + Send
        + Sync
{
}
