//! The edge's view of a session's vaults: the credential for a URL, its secret ready to send,
//! and OAuth refresh (before expiry, and after a 401) with the new tokens sealed and stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use serde::Deserialize;

use agentd_catalog::{StoredCredential, Vaults};
use agentd_wire::vault::{
    CredentialAuth, CredentialNetworking, CredentialValidation, InjectionLocation, OAuthRefresh,
    RefreshOutcome, TokenEndpointAuth,
};

use crate::{OpenError, Reach, Sealer, Secret, Secrets};

/// A token this close to its expiry is refreshed before use.
const EARLY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// A credential chosen for a request, and the `Authorization` header value to send with it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub vault_id: String,
    pub credential_id: String,
    pub authorization: Secret,
}

/// An `environment_variable` credential of a session, for the egress proxy: the secret it
/// substitutes for its placeholder, where, and on requests to which hosts.
#[derive(Debug, Clone)]
pub struct EnvironmentSecret {
    pub vault_id: String,
    pub credential_id: String,
    pub secret_name: String,
    pub value: Secret,
    pub injection_location: InjectionLocation,
    pub networking: CredentialNetworking,
}

impl EnvironmentSecret {
    /// Whether the secret is substituted on a request to `host`: any host when unrestricted;
    /// else an entry equal to it, or `*.d` for a subdomain of `d` (not `d` itself).
    pub fn applies_to(&self, host: &str) -> bool {
        match &self.networking {
            CredentialNetworking::Unrestricted => true,
            CredentialNetworking::Limited { allowed_hosts } => allowed_hosts
                .iter()
                .any(|e| agentd_egress::host_matches(e, host)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Storage(#[from] agentd_catalog::Error),
    #[error(transparent)]
    Sealed(#[from] OpenError),
    #[error(transparent)]
    Refresh(#[from] RefreshError),
    /// The credential's server may not be reached from here (see `Reach`).
    #[error("{0}")]
    Unreachable(String),
}

/// A refresh that did not give a new access token. Names the credential, never its secrets.
#[derive(Debug, thiserror::Error)]
#[error(
    "refreshing the OAuth token of credential {credential_id} (vault {vault_id}) failed: {failure}"
)]
pub struct RefreshError {
    pub vault_id: String,
    pub credential_id: String,
    pub failure: RefreshFailure,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshFailure {
    #[error("the credential has no refresh token; update it with a new access token")]
    NoRefreshToken,
    #[error("the token endpoint could not be reached: {0}")]
    Connect(String),
    #[error("the token endpoint may not be reached from agentd: {0}")]
    Unreachable(String),
    #[error("the token endpoint answered HTTP {0}")]
    Status(u16),
    #[error("the token endpoint's answer has no access_token")]
    BadResponse,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Secret,
    #[serde(default)]
    refresh_token: Option<Secret>,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// Finds and refreshes credentials. Cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    store: Arc<dyn Vaults>,
    sealer: Sealer,
    reach: Reach,
    http: reqwest::Client,
    /// One refresh per credential at a time: a refresh token may be single-use.
    refreshing: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Whether `url` is the server a credential names: scheme, host, port and path (a trailing
/// slash aside) equal.
fn same_server(a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (reqwest::Url::parse(a), reqwest::Url::parse(b)) else {
        return false;
    };
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
        && a.query() == b.query()
}

impl Resolver {
    /// A resolver over `store`'s vaults whose HTTP requests (token endpoints, MCP probes) go
    /// only where `reach` allows.
    pub fn new(store: Arc<dyn Vaults>, sealer: Sealer, reach: Reach) -> Resolver {
        let http = reach.client();
        Resolver {
            store,
            sealer,
            reach,
            http,
            refreshing: Arc::default(),
        }
    }

    /// The first live credential, in the order of `vault_ids`, for the MCP server at `url`.
    async fn find(
        &self,
        ws: &str,
        vault_ids: &[String],
        url: &str,
    ) -> Result<Option<StoredCredential>, ResolveError> {
        for v in vault_ids {
            let mut page = None;
            loop {
                let p = match self.store.list_credentials(ws, v, false, 100, page).await {
                    Ok(p) => p,
                    // A vault deleted since the session began serves nothing.
                    Err(agentd_catalog::Error::NotFound(_)) => break,
                    Err(e) => return Err(e.into()),
                };
                if let Some(c) = p.items.into_iter().find(|c| {
                    c.credential
                        .auth
                        .mcp_server_url()
                        .is_some_and(|u| same_server(u, url))
                }) {
                    return Ok(Some(c));
                }
                match p.next {
                    Some(n) => page = Some(n),
                    None => break,
                }
            }
        }
        Ok(None)
    }

    /// Every live `environment_variable` credential of a session's vaults, opened: one per
    /// `secret_name`, the first vault in `vault_ids` order that has it winning.
    pub async fn environment_secrets(
        &self,
        ws: &str,
        vault_ids: &[String],
    ) -> Result<Vec<EnvironmentSecret>, ResolveError> {
        let mut out: Vec<EnvironmentSecret> = Vec::new();
        for v in vault_ids {
            let mut page = None;
            loop {
                let p = match self.store.list_credentials(ws, v, false, 100, page).await {
                    Ok(p) => p,
                    Err(agentd_catalog::Error::NotFound(_)) => break,
                    Err(e) => return Err(e.into()),
                };
                for c in p.items {
                    let CredentialAuth::EnvironmentVariable {
                        secret_name,
                        injection_location,
                        networking,
                    } = &c.credential.auth
                    else {
                        continue;
                    };
                    if out.iter().any(|e| e.secret_name == *secret_name) {
                        continue;
                    }
                    let s = self.sealer.open_secrets(&c.credential.id, &c.sealed)?;
                    let value = s
                        .secret_value
                        .ok_or_else(|| OpenError::Malformed(c.credential.id.clone()))?;
                    out.push(EnvironmentSecret {
                        vault_id: c.credential.vault_id.clone(),
                        credential_id: c.credential.id.clone(),
                        secret_name: secret_name.clone(),
                        value,
                        injection_location: *injection_location,
                        networking: networking.clone(),
                    });
                }
                match p.next {
                    Some(n) => page = Some(n),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// The `Authorization` value for a request to the MCP server at `url` from a session with
    /// `vault_ids`, refreshing an OAuth token that expires within a minute. None when no vault
    /// of the session holds a credential for it.
    pub async fn mcp_authorization(
        &self,
        ws: &str,
        vault_ids: &[String],
        url: &str,
    ) -> Result<Option<Resolved>, ResolveError> {
        let Some(c) = self.find(ws, vault_ids, url).await? else {
            return Ok(None);
        };
        let due = matches!(
            &c.credential.auth,
            CredentialAuth::McpOauth { expires_at: Some(t), refresh: Some(_), .. } if *t - EARLY <= Utc::now()
        );
        let c = if due {
            self.refresh(ws, &c, None).await?
        } else {
            c
        };
        self.authorization(&c).map(Some)
    }

    /// After the server answered 401 to `r`: refresh the credential (unless another caller
    /// already did) and return the new value to retry with.
    pub async fn after_unauthorized(
        &self,
        ws: &str,
        r: &Resolved,
    ) -> Result<Resolved, ResolveError> {
        let c = self
            .store
            .get_credential(ws, &r.vault_id, &r.credential_id)
            .await?;
        let c = self.refresh(ws, &c, Some(&r.authorization)).await?;
        self.authorization(&c)
    }

    fn authorization(&self, c: &StoredCredential) -> Result<Resolved, ResolveError> {
        let s = self.sealer.open_secrets(&c.credential.id, &c.sealed)?;
        let token = match &c.credential.auth {
            CredentialAuth::StaticBearer { .. } => s.token,
            CredentialAuth::McpOauth { .. } => s.access_token,
            CredentialAuth::EnvironmentVariable { .. } => None,
        };
        let token = token.ok_or_else(|| OpenError::Malformed(c.credential.id.clone()))?;
        Ok(Resolved {
            vault_id: c.credential.vault_id.clone(),
            credential_id: c.credential.id.clone(),
            authorization: Secret::new(format!("Bearer {}", token.expose())),
        })
    }

    /// The refresh-token grant at `cfg`'s token endpoint.
    async fn exchange(
        &self,
        cfg: &OAuthRefresh,
        secrets: &Secrets,
        refresh_token: &Secret,
    ) -> Result<TokenResponse, RefreshFailure> {
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        if let Some(s) = &cfg.scope {
            form.push(("scope", s));
        }
        if let Some(r) = &cfg.resource {
            form.push(("resource", r));
        }
        self.reach
            .check(&cfg.token_endpoint)
            .await
            .map_err(RefreshFailure::Unreachable)?;
        let mut req = self.http.post(&cfg.token_endpoint);
        match cfg.token_endpoint_auth {
            TokenEndpointAuth::None => form.push(("client_id", &cfg.client_id)),
            TokenEndpointAuth::ClientSecretPost => {
                form.push(("client_id", &cfg.client_id));
                if let Some(s) = &secrets.client_secret {
                    form.push(("client_secret", s.expose()));
                }
            }
            TokenEndpointAuth::ClientSecretBasic => {
                req = req.basic_auth(
                    &cfg.client_id,
                    secrets.client_secret.as_ref().map(Secret::expose),
                );
            }
        }
        let resp = req
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form_body(&form))
            .send()
            .await
            // Without the URL: reqwest's message for a failed connect is enough to act on.
            .map_err(|e| RefreshFailure::Connect(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(RefreshFailure::Status(resp.status().as_u16()));
        }
        resp.json().await.map_err(|_| RefreshFailure::BadResponse)
    }

    /// Refresh `c`'s OAuth token and store the result. With `failed` (the value a server
    /// refused), a credential whose token already changed since is returned as it stands.
    async fn refresh(
        &self,
        ws: &str,
        c: &StoredCredential,
        failed: Option<&Secret>,
    ) -> Result<StoredCredential, ResolveError> {
        let (vault, id) = (&c.credential.vault_id, &c.credential.id);
        let lock = self
            .refreshing
            .lock()
            .expect("the refresh map is never poisoned")
            .entry(id.clone())
            .or_default()
            .clone();
        let _held = lock.lock().await;
        // Read again under the lock: another caller may have refreshed meanwhile.
        let c = self.store.get_credential(ws, vault, id).await?;
        let fail = |failure| RefreshError {
            vault_id: vault.clone(),
            credential_id: id.clone(),
            failure,
        };
        let CredentialAuth::McpOauth {
            refresh: Some(cfg),
            expires_at,
            ..
        } = &c.credential.auth
        else {
            return Err(fail(RefreshFailure::NoRefreshToken).into());
        };
        let secrets = self.sealer.open_secrets(id, &c.sealed)?;
        if let Some(failed) = failed {
            let now = self.authorization(&c)?;
            if now.authorization != *failed {
                return Ok(c);
            }
        } else if expires_at.is_some_and(|t| t - EARLY > Utc::now()) {
            return Ok(c);
        }
        let Some(refresh_token) = &secrets.refresh_token else {
            return Err(fail(RefreshFailure::NoRefreshToken).into());
        };
        let tokens = self
            .exchange(cfg, &secrets, refresh_token)
            .await
            .map_err(fail)?;
        let sealer = self.sealer.clone();
        let stored = self
            .store
            .update_credential(
                ws,
                vault,
                id,
                Box::new(move |s| {
                    let mut secrets: Secrets = sealer
                        .open_secrets(&s.credential.id, &s.sealed)
                        .map_err(|e| agentd_catalog::Error::Storage(e.to_string()))?;
                    secrets.access_token = Some(tokens.access_token);
                    if let Some(r) = tokens.refresh_token {
                        secrets.refresh_token = Some(r);
                    }
                    if let CredentialAuth::McpOauth { expires_at, .. } = &mut s.credential.auth {
                        *expires_at = tokens
                            .expires_in
                            .map(|secs| Utc::now() + chrono::TimeDelta::seconds(secs));
                    }
                    s.sealed = sealer.seal_secrets(&s.credential.id, &secrets);
                    Ok(())
                }),
            )
            .await?;
        tracing::info!(credential = %id, vault = %vault, "refreshed an OAuth token");
        Ok(stored)
    }
}

/// What a probe's response looked like, with the credential's secrets scrubbed from its body.
async fn captured(resp: reqwest::Response, secrets: &Secrets) -> serde_json::Value {
    const MAX: usize = 2048;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut body = resp.text().await.unwrap_or_default();
    for s in [
        &secrets.token,
        &secrets.access_token,
        &secrets.refresh_token,
        &secrets.client_secret,
        &secrets.secret_value,
    ]
    .into_iter()
    .flatten()
    {
        body = body.replace(s.expose(), "[redacted]");
    }
    let truncated = body.len() > MAX;
    if truncated {
        let mut end = MAX;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body.truncate(end);
    }
    serde_json::json!({
        "status_code": status,
        "content_type": content_type,
        "body": body,
        "body_truncated": truncated,
    })
}

impl Resolver {
    /// `mcp_oauth_validate`: an MCP `initialize` to the credential's server with its token;
    /// on a 401, one refresh and a second try.
    pub async fn validate(
        &self,
        ws: &str,
        c: &StoredCredential,
    ) -> Result<CredentialValidation, ResolveError> {
        let secrets = self.sealer.open_secrets(&c.credential.id, &c.sealed)?;
        let url = c
            .credential
            .auth
            .mcp_server_url()
            .unwrap_or_default()
            .to_owned();
        let mut out = CredentialValidation {
            kind: "vault_credential_validation".into(),
            credential_id: c.credential.id.clone(),
            vault_id: c.credential.vault_id.clone(),
            has_refresh_token: secrets.refresh_token.is_some(),
            status: "unknown".into(),
            mcp_probe: None,
            refresh: None,
            validated_at: Utc::now(),
        };
        self.reach
            .check(&url)
            .await
            .map_err(ResolveError::Unreachable)?;
        let mut auth = self.authorization(c)?;
        let mut refreshed = false;
        loop {
            let sent = self
                .http
                .post(&url)
                .header("authorization", auth.authorization.expose())
                .header("accept", "application/json, text/event-stream")
                .json(&serde_json::json!({
                    "jsonrpc": "2.0", "id": 1, "method": "initialize",
                    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                               "clientInfo": {"name": "agentd", "version": env!("CARGO_PKG_VERSION")}}
                }))
                .send()
                .await;
            let resp = match sent {
                Ok(r) => r,
                Err(_) => {
                    out.mcp_probe =
                        Some(serde_json::json!({"method": "initialize", "http_response": null}));
                    return Ok(out);
                }
            };
            if resp.status().is_success() {
                out.status = "valid".into();
                out.mcp_probe = None;
                return Ok(out);
            }
            let unauthorized = resp.status() == reqwest::StatusCode::UNAUTHORIZED;
            out.status = "invalid".into();
            out.mcp_probe = Some(serde_json::json!({
                "method": "initialize",
                "http_response": captured(resp, &secrets).await,
            }));
            if !unauthorized || refreshed {
                return Ok(out);
            }
            refreshed = true;
            if !out.has_refresh_token {
                out.refresh = Some(RefreshOutcome {
                    status: "no_refresh_token".into(),
                    http_response: None,
                });
                return Ok(out);
            }
            match self.after_unauthorized(ws, &auth).await {
                Ok(new) => {
                    out.refresh = Some(RefreshOutcome {
                        status: "succeeded".into(),
                        http_response: None,
                    });
                    auth = new;
                }
                Err(ResolveError::Refresh(e)) => {
                    let (status, http) = match e.failure {
                        RefreshFailure::Connect(_) | RefreshFailure::Unreachable(_) => {
                            ("connect_error", None)
                        }
                        RefreshFailure::Status(code) => (
                            "failed",
                            Some(
                                serde_json::json!({"status_code": code, "content_type": "", "body": "", "body_truncated": false}),
                            ),
                        ),
                        RefreshFailure::NoRefreshToken => ("no_refresh_token", None),
                        RefreshFailure::BadResponse => ("failed", None),
                    };
                    out.refresh = Some(RefreshOutcome {
                        status: status.into(),
                        http_response: http,
                    });
                    return Ok(out);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn form_body(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[cfg(test)]
mod tests;
