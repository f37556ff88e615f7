//! The credential agentd sends an MCP server: the one the session's vaults hold for the
//! server's URL, found by the vault resolver at the edge, per request. The token never reaches
//! the model, the log or a sandbox; a refused one is refreshed once (OAuth) before the MCP
//! client gives the server up for the turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agentd_catalog::Storage;
use agentd_mcp::{AuthError, McpAuth, Secret};
use agentd_vault::{Resolved, Resolver};

pub struct VaultAuth {
    store: Arc<dyn Storage>,
    resolver: Resolver,
    /// The credential last handed out per (session, server URL): what a refusal refreshes.
    handed: Mutex<HashMap<(String, String), (String, Resolved)>>,
}

impl VaultAuth {
    pub fn new(store: Arc<dyn Storage>, resolver: Resolver) -> VaultAuth {
        VaultAuth {
            store,
            resolver,
            handed: Mutex::default(),
        }
    }

    fn remember(&self, sid: &str, url: &str, ws: String, r: Option<&Resolved>) {
        let mut m = self.handed.lock().unwrap_or_else(|e| e.into_inner());
        let key = (sid.to_owned(), url.to_owned());
        match r {
            Some(r) => m.insert(key, (ws, r.clone())),
            None => m.remove(&key),
        };
    }
}

fn failed(e: impl std::fmt::Display) -> AuthError {
    AuthError(e.to_string())
}

#[async_trait::async_trait]
impl McpAuth for VaultAuth {
    async fn authorization(
        &self,
        session_id: &str,
        server_url: &str,
    ) -> Result<Option<Secret>, AuthError> {
        let sv = self
            .store
            .session_vaults(session_id)
            .await
            .map_err(failed)?;
        if sv.vault_ids.is_empty() {
            return Ok(None);
        }
        let found = self
            .resolver
            .mcp_authorization(&sv.workspace_id, &sv.vault_ids, server_url)
            .await
            .map_err(failed)?;
        self.remember(session_id, server_url, sv.workspace_id, found.as_ref());
        // The resolver gives the header's value; the MCP client sends the token as a bearer.
        Ok(found.map(|r| {
            let header = r.authorization.expose();
            Secret::new(header.strip_prefix("Bearer ").unwrap_or(header))
        }))
    }

    async fn refused(&self, session_id: &str, server_url: &str) -> Result<(), AuthError> {
        let handed = self
            .handed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(session_id.to_owned(), server_url.to_owned()))
            .cloned();
        let Some((ws, r)) = handed else {
            return Ok(());
        };
        match self.resolver.after_unauthorized(&ws, &r).await {
            Ok(_) => Ok(()),
            // A static token cannot be refreshed; asking again picks up one updated meanwhile.
            Err(agentd_vault::ResolveError::Refresh(agentd_vault::RefreshError {
                failure: agentd_vault::RefreshFailure::NoRefreshToken,
                ..
            })) => Ok(()),
            Err(e) => Err(failed(e)),
        }
    }
}
