//! Where a request's credential comes from. The MCP client asks for every request (and once
//! more after a 401), so a resolver may rotate a token without the connection knowing.

use std::fmt;

/// A credential for one MCP server: the bearer token sent as `Authorization: Bearer …`.
/// Never printed: its `Debug` hides the value, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(token: impl Into<String>) -> Secret {
        Secret(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// Finds the credential session `session_id` holds for the MCP server at `server_url`, if any
/// (the lead wires the vault resolver in; agentd's default sends none).
#[async_trait::async_trait]
pub trait McpAuth: Send + Sync {
    async fn authorization(
        &self,
        session_id: &str,
        server_url: &str,
    ) -> Result<Option<Secret>, AuthError>;

    /// The server refused the credential `authorization` gave (a 401/403); the client asks for
    /// one once more after this returns. A resolver refreshes an OAuth token here.
    async fn refused(&self, _session_id: &str, _server_url: &str) -> Result<(), AuthError> {
        Ok(())
    }
}

/// No credentials: every request goes without an `Authorization` header.
pub struct NoAuth;

#[async_trait::async_trait]
impl McpAuth for NoAuth {
    async fn authorization(&self, _: &str, _: &str) -> Result<Option<Secret>, AuthError> {
        Ok(None)
    }
}
