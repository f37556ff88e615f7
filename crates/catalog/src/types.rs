//! The backend-neutral values the catalog's methods take and return.

use std::collections::BTreeMap;

use agentd_wire::agent::{AgentSpec, SessionAgent};
use agentd_wire::environment::Environment;
use agentd_wire::vault::{Credential, Vault};
use agentd_wire::{SessionStatus, Timestamp};

use crate::Result;

/// A page of results and the cursor of the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// The page of `rows` fetched with one row more than `limit`: that extra row, if it came,
    /// says another page follows, whose cursor is `cursor` of the page's last item.
    pub fn of(mut rows: Vec<T>, limit: usize, cursor: impl Fn(&T) -> String) -> Page<T> {
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(cursor)
        } else {
            None
        };
        Page { items: rows, next }
    }
}

/// Sort order of list endpoints that take `order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: String,
    pub workspace: Workspace,
    pub name: Option<String>,
    pub created_at: Timestamp,
}

/// The workspace keys land in when none is named.
pub const DEFAULT_WORKSPACE: &str = "default";

#[derive(Debug, Clone, Default)]
pub struct AgentFilter {
    pub include_archived: bool,
    pub created_at_gte: Option<Timestamp>,
    pub created_at_lte: Option<Timestamp>,
    pub limit: usize,
    pub page: Option<String>,
}

/// Makes the next version of an agent from the latest one's spec (see `Agents::update_agent`).
pub type AgentEdit = Box<dyn FnOnce(&AgentSpec) -> Result<AgentSpec> + Send>;

/// Builds a new environment from its id and creation time (see
/// `Environments::create_environment`).
pub type EnvironmentMake = Box<dyn FnOnce(String, Timestamp) -> Environment + Send>;

/// Changes a stored environment in place (see `Environments::update_environment`).
pub type EnvironmentEdit = Box<dyn FnOnce(&mut Environment) -> Result<()> + Send>;

pub struct NewSession {
    pub agent: SessionAgent,
    pub environment_id: String,
    pub title: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub vault_ids: Vec<String>,
    /// Mounted in its sandbox at provision (`agentd_wire::resource`).
    pub resources: Vec<agentd_wire::resource::Resource>,
    /// The sealed authorization tokens of those resources that have one, by resource id.
    pub sealed_tokens: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub agent_id: Option<String>,
    pub agent_version: Option<u32>,
    pub statuses: Vec<SessionStatus>,
    pub include_archived: bool,
    pub created_at_gt: Option<Timestamp>,
    pub created_at_gte: Option<Timestamp>,
    pub created_at_lt: Option<Timestamp>,
    pub created_at_lte: Option<Timestamp>,
    pub order: Order,
    pub limit: usize,
    pub page: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub order: Order,
    pub limit: usize,
    /// Cursor: the position after (asc) or before (desc) which the page starts.
    pub page: Option<String>,
    pub types: Vec<String>,
    pub created_at_gt: Option<Timestamp>,
    pub created_at_gte: Option<Timestamp>,
    pub created_at_lt: Option<Timestamp>,
    pub created_at_lte: Option<Timestamp>,
}

/// What the harness needs to know about a child thread.
#[derive(Debug, Clone)]
pub struct ThreadRow {
    pub id: String,
    pub session_id: String,
    pub parent_thread_id: String,
    pub agent_name: String,
    pub agent: SessionAgent,
    pub status: SessionStatus,
    pub archived: bool,
}

/// A file to store.
pub struct NewFile {
    pub filename: String,
    pub mime_type: String,
    pub content: Vec<u8>,
    pub expires_at: Option<Timestamp>,
}

/// Builds a new vault from its id and creation time (see `Vaults::create_vault`).
pub type VaultMake = Box<dyn FnOnce(String, Timestamp) -> Vault + Send>;

/// Changes a stored vault in place (see `Vaults::update_vault`).
pub type VaultEdit = Box<dyn FnOnce(&mut Vault) -> Result<()> + Send>;

/// A credential as stored: its public face and its secrets, sealed by `agentd-vault` with the
/// credential's id as associated data. The catalog never sees the secrets in the clear.
#[derive(Clone, PartialEq)]
pub struct StoredCredential {
    pub credential: Credential,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("credential", &self.credential)
            .field("sealed", &format_args!("<{} bytes>", self.sealed.len()))
            .finish()
    }
}

impl StoredCredential {
    /// What at most one live credential of a vault may have: the MCP server it authenticates
    /// against, or the name of its environment variable.
    pub fn match_key(&self) -> String {
        use agentd_wire::vault::CredentialAuth as A;
        match &self.credential.auth {
            A::McpOauth { mcp_server_url, .. } | A::StaticBearer { mcp_server_url } => {
                format!("mcp:{mcp_server_url}")
            }
            A::EnvironmentVariable { secret_name, .. } => format!("env:{secret_name}"),
        }
    }
}

/// Builds a new credential from its id and creation time: the id is the associated data of
/// its seal, so the secrets are sealed here (see `Vaults::create_credential`).
pub type CredentialMake = Box<dyn FnOnce(String, Timestamp) -> Result<StoredCredential> + Send>;

/// Changes a stored credential in place, resealing its secrets if they change.
pub type CredentialEdit = Box<dyn FnOnce(&mut StoredCredential) -> Result<()> + Send>;

/// Reseals one credential's secrets (its id, the old seal) under a new key.
pub type Reseal = Box<dyn FnMut(&str, &[u8]) -> Result<Vec<u8>> + Send>;
