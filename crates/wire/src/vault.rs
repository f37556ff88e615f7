//! Vaults and the public face of their credentials. A credential's secret parts (tokens,
//! client secrets, secret values) are write-only: they are parsed by `agentd-vault`, sealed
//! there, and have no field here, so nothing built from these types can return them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vault {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: VaultTag,
    pub display_name: String,
    pub metadata: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaultTag {
    Vault,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVault {
    pub display_name: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateVault {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, Option<String>>>,
}

/// A credential as the API shows it: everything but its secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: CredentialTag,
    pub vault_id: String,
    pub display_name: Option<String>,
    pub auth: CredentialAuth,
    pub metadata: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialTag {
    VaultCredential,
}

/// The non-secret part of a credential's `auth`, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CredentialAuth {
    McpOauth {
        mcp_server_url: String,
        expires_at: Option<Timestamp>,
        refresh: Option<OAuthRefresh>,
    },
    StaticBearer {
        mcp_server_url: String,
    },
    EnvironmentVariable {
        secret_name: String,
        injection_location: InjectionLocation,
        networking: CredentialNetworking,
    },
}

impl CredentialAuth {
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialAuth::McpOauth { .. } => "mcp_oauth",
            CredentialAuth::StaticBearer { .. } => "static_bearer",
            CredentialAuth::EnvironmentVariable { .. } => "environment_variable",
        }
    }

    /// The MCP server a credential of an MCP kind authenticates against.
    pub fn mcp_server_url(&self) -> Option<&str> {
        match self {
            CredentialAuth::McpOauth { mcp_server_url, .. }
            | CredentialAuth::StaticBearer { mcp_server_url } => Some(mcp_server_url),
            CredentialAuth::EnvironmentVariable { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthRefresh {
    pub client_id: String,
    pub token_endpoint: String,
    pub token_endpoint_auth: TokenEndpointAuth,
    pub resource: Option<String>,
    pub scope: Option<String>,
}

/// How the token endpoint authenticates the client; the client secret itself is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TokenEndpointAuth {
    None,
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InjectionLocation {
    pub body: bool,
    pub header: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialNetworking {
    Unrestricted,
    Limited { allowed_hosts: Vec<String> },
}

/// `mcp_oauth_validate`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialValidation {
    #[serde(rename = "type")]
    pub kind: String,
    pub credential_id: String,
    pub vault_id: String,
    pub has_refresh_token: bool,
    pub status: String,
    pub mcp_probe: Option<serde_json::Value>,
    pub refresh: Option<RefreshOutcome>,
    pub validated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshOutcome {
    pub status: String,
    pub http_response: Option<serde_json::Value>,
}
