//! The `auth` of a credential create or update, as the SDK sends it, and how it becomes (or
//! changes) a credential's public face and its secrets. Errors name the field and never
//! quote a secret.

use chrono::Utc;
use serde::Deserialize;

use agentd_wire::Timestamp;
use agentd_wire::vault::{
    CredentialAuth, CredentialNetworking, InjectionLocation, OAuthRefresh, TokenEndpointAuth,
};

use crate::{Secret, Secrets};

/// A create's `auth`, by its `type` (read first, so errors inside name their whole path).
#[derive(Debug)]
pub enum CreateAuth {
    McpOauth(McpOauthCreate),
    StaticBearer(StaticBearerCreate),
    EnvironmentVariable(EnvironmentVariableCreate),
}

/// The `type`s of `auth`.
pub const TYPES: &[&str] = &["mcp_oauth", "static_bearer", "environment_variable"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpOauthCreate {
    pub access_token: Secret,
    pub mcp_server_url: String,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub refresh: Option<CreateRefresh>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticBearerCreate {
    pub token: Secret,
    pub mcp_server_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentVariableCreate {
    pub secret_name: String,
    pub secret_value: Secret,
    pub networking: CredentialNetworking,
    #[serde(default)]
    pub injection_location: Option<InjectionParams>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRefresh {
    pub client_id: String,
    pub refresh_token: Secret,
    pub token_endpoint: String,
    pub token_endpoint_auth: CreateEndpointAuth,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CreateEndpointAuth {
    None,
    ClientSecretBasic { client_secret: Secret },
    ClientSecretPost { client_secret: Secret },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectionParams {
    #[serde(default)]
    pub body: Option<bool>,
    #[serde(default)]
    pub header: Option<bool>,
}

/// An update's `auth`, by its `type`.
#[derive(Debug)]
pub enum UpdateAuth {
    McpOauth(McpOauthUpdate),
    StaticBearer(StaticBearerUpdate),
    EnvironmentVariable(EnvironmentVariableUpdate),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpOauthUpdate {
    #[serde(default)]
    pub access_token: Option<Secret>,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    #[serde(default)]
    pub refresh: Option<UpdateRefresh>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticBearerUpdate {
    #[serde(default)]
    pub token: Option<Secret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentVariableUpdate {
    #[serde(default)]
    pub injection_location: Option<InjectionParams>,
    #[serde(default)]
    pub networking: Option<CredentialNetworking>,
    #[serde(default)]
    pub secret_value: Option<Secret>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRefresh {
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub token_endpoint_auth: Option<UpdateEndpointAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpointAuth {
    #[serde(rename = "type")]
    pub kind: UpdateEndpointAuthKind,
    #[serde(default)]
    pub client_secret: Option<Secret>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateEndpointAuthKind {
    ClientSecretBasic,
    ClientSecretPost,
}

type R<T> = Result<T, String>;

/// An `http` or `https` URL with a host.
fn url(field: &str, s: &str) -> R<()> {
    match reqwest::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(format!("{field}: {s:?} is not an http or https URL")),
    }
}

fn future(field: &str, t: Option<Timestamp>) -> R<()> {
    match t {
        Some(t) if t <= Utc::now() => Err(format!("{field}: must be in the future")),
        _ => Ok(()),
    }
}

/// A secret value goes into header values and bodies: a line break or NUL in it would split
/// the request it is written into. The message never quotes it.
fn one_line(v: &Secret) -> R<()> {
    if v.expose().chars().any(|c| matches!(c, '\r' | '\n' | '\0')) {
        return Err(
            "auth.secret_value: has a line break or NUL, which cannot go into a request".into(),
        );
    }
    Ok(())
}

fn env_name(s: &str) -> R<()> {
    let mut chars = s.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "auth.secret_name: {s:?} is not an environment variable name (letters, digits and _, not starting with a digit)"
        ))
    }
}

fn networking(n: &CredentialNetworking) -> R<()> {
    let CredentialNetworking::Limited { allowed_hosts } = n else {
        return Ok(());
    };
    if allowed_hosts.is_empty() || allowed_hosts.len() > 16 {
        return Err("auth.networking.allowed_hosts: must have 1 to 16 entries".into());
    }
    for (i, h) in allowed_hosts.iter().enumerate() {
        let bare = h.strip_prefix("*.").unwrap_or(h);
        let ok = !bare.is_empty()
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && !bare.starts_with('.')
            && !bare.ends_with('.');
        if !ok {
            return Err(format!(
                "auth.networking.allowed_hosts[{i}]: {h:?} is not a hostname, an IPv4 address or a *. wildcard"
            ));
        }
    }
    Ok(())
}

fn injection(p: Option<InjectionParams>, current: InjectionLocation) -> R<InjectionLocation> {
    let p = p.unwrap_or_default();
    let loc = InjectionLocation {
        body: p.body.unwrap_or(current.body),
        header: p.header.unwrap_or(current.header),
    };
    if !loc.body && !loc.header {
        return Err("auth.injection_location: at least one of body and header must be true".into());
    }
    Ok(loc)
}

/// A new credential's public `auth` and its secrets.
pub fn create(a: CreateAuth) -> R<(CredentialAuth, Secrets)> {
    match a {
        CreateAuth::StaticBearer(StaticBearerCreate {
            token,
            mcp_server_url,
        }) => {
            url("auth.mcp_server_url", &mcp_server_url)?;
            Ok((
                CredentialAuth::StaticBearer { mcp_server_url },
                Secrets {
                    token: Some(token),
                    ..Secrets::default()
                },
            ))
        }
        CreateAuth::McpOauth(McpOauthCreate {
            access_token,
            mcp_server_url,
            expires_at,
            refresh,
        }) => {
            url("auth.mcp_server_url", &mcp_server_url)?;
            future("auth.expires_at", expires_at)?;
            let mut secrets = Secrets {
                access_token: Some(access_token),
                ..Secrets::default()
            };
            let refresh = match refresh {
                None => None,
                Some(r) => {
                    url("auth.refresh.token_endpoint", &r.token_endpoint)?;
                    if r.client_id.is_empty() {
                        return Err("auth.refresh.client_id: must not be empty".into());
                    }
                    secrets.refresh_token = Some(r.refresh_token);
                    let auth = match r.token_endpoint_auth {
                        CreateEndpointAuth::None => TokenEndpointAuth::None,
                        CreateEndpointAuth::ClientSecretBasic { client_secret } => {
                            secrets.client_secret = Some(client_secret);
                            TokenEndpointAuth::ClientSecretBasic
                        }
                        CreateEndpointAuth::ClientSecretPost { client_secret } => {
                            secrets.client_secret = Some(client_secret);
                            TokenEndpointAuth::ClientSecretPost
                        }
                    };
                    Some(OAuthRefresh {
                        client_id: r.client_id,
                        token_endpoint: r.token_endpoint,
                        token_endpoint_auth: auth,
                        resource: r.resource,
                        scope: r.scope.filter(|s| !s.is_empty()),
                    })
                }
            };
            Ok((
                CredentialAuth::McpOauth {
                    mcp_server_url,
                    expires_at,
                    refresh,
                },
                secrets,
            ))
        }
        CreateAuth::EnvironmentVariable(EnvironmentVariableCreate {
            secret_name,
            secret_value,
            networking: net,
            injection_location,
        }) => {
            env_name(&secret_name)?;
            one_line(&secret_value)?;
            networking(&net)?;
            let loc = injection(
                injection_location,
                InjectionLocation {
                    body: false,
                    header: true,
                },
            )?;
            Ok((
                CredentialAuth::EnvironmentVariable {
                    secret_name,
                    injection_location: loc,
                    networking: net,
                },
                Secrets {
                    secret_value: Some(secret_value),
                    ..Secrets::default()
                },
            ))
        }
    }
}

/// Apply an update to a credential's `auth` and secrets, in place. The kind cannot change.
pub fn update(u: UpdateAuth, auth: &mut CredentialAuth, secrets: &mut Secrets) -> R<()> {
    match (u, auth) {
        (
            UpdateAuth::StaticBearer(StaticBearerUpdate { token }),
            CredentialAuth::StaticBearer { .. },
        ) => {
            if let Some(t) = token {
                secrets.token = Some(t);
            }
            Ok(())
        }
        (
            UpdateAuth::McpOauth(McpOauthUpdate {
                access_token,
                expires_at,
                refresh,
            }),
            CredentialAuth::McpOauth {
                expires_at: stored_expiry,
                refresh: stored_refresh,
                ..
            },
        ) => {
            future("auth.expires_at", expires_at)?;
            if let Some(t) = access_token {
                secrets.access_token = Some(t);
            }
            if expires_at.is_some() {
                *stored_expiry = expires_at;
            }
            if let Some(r) = refresh {
                let Some(stored) = stored_refresh.as_mut() else {
                    return Err(
                        "auth.refresh: this credential was created without refresh settings; create a new credential to add them".into(),
                    );
                };
                if let Some(t) = r.refresh_token {
                    secrets.refresh_token = Some(t);
                }
                if let Some(s) = r.scope {
                    stored.scope = Some(s).filter(|s| !s.is_empty());
                }
                if let Some(a) = r.token_endpoint_auth {
                    if stored.token_endpoint_auth == TokenEndpointAuth::None {
                        return Err("auth.refresh.token_endpoint_auth: the credential's token endpoint takes no client secret".into());
                    }
                    // The stored kind stays, whichever of the two `a.kind` says (as the SDK says).
                    if let Some(s) = a.client_secret {
                        secrets.client_secret = Some(s);
                    }
                }
            }
            Ok(())
        }
        (
            UpdateAuth::EnvironmentVariable(EnvironmentVariableUpdate {
                injection_location,
                networking: net,
                secret_value,
            }),
            CredentialAuth::EnvironmentVariable {
                injection_location: loc,
                networking: stored_net,
                ..
            },
        ) => {
            *loc = injection(injection_location, *loc)?;
            if let Some(n) = net {
                networking(&n)?;
                *stored_net = n;
            }
            if let Some(v) = secret_value {
                one_line(&v)?;
                secrets.secret_value = Some(v);
            }
            Ok(())
        }
        (u, a) => {
            let sent = match u {
                UpdateAuth::McpOauth(_) => "mcp_oauth",
                UpdateAuth::StaticBearer(_) => "static_bearer",
                UpdateAuth::EnvironmentVariable(_) => "environment_variable",
            };
            Err(format!(
                "auth.type: the credential is {}, not {sent}; a credential's type cannot change",
                a.kind()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(json: serde_json::Value) -> (CredentialAuth, Secrets) {
        create(CreateAuth::McpOauth(serde_json::from_value(json).unwrap())).unwrap()
    }

    #[test]
    fn an_update_changes_what_it_names_and_keeps_the_rest() {
        let (mut auth, mut secrets) = oauth(serde_json::json!({
            "access_token": "a1", "mcp_server_url": "https://m.example/",
            "refresh": {"client_id": "c", "refresh_token": "r1", "token_endpoint": "https://t.example/",
                        "token_endpoint_auth": {"type": "client_secret_post", "client_secret": "s1"},
                        "scope": "read"}}));
        let u: McpOauthUpdate = serde_json::from_value(serde_json::json!({
            "refresh": {"scope": "", "token_endpoint_auth": {"type": "client_secret_basic", "client_secret": "s2"}}}))
        .unwrap();
        update(UpdateAuth::McpOauth(u), &mut auth, &mut secrets).unwrap();
        let CredentialAuth::McpOauth {
            refresh: Some(r), ..
        } = &auth
        else {
            panic!("{auth:?}");
        };
        assert_eq!(r.scope, None, "an empty scope clears it");
        assert_eq!(
            r.token_endpoint_auth,
            TokenEndpointAuth::ClientSecretPost,
            "the stored kind stays, as the SDK says"
        );
        assert_eq!(secrets.client_secret, Some(Secret::new("s2")));
        assert_eq!(secrets.access_token, Some(Secret::new("a1")));
        assert_eq!(secrets.refresh_token, Some(Secret::new("r1")));

        let wrong = update(
            UpdateAuth::StaticBearer(StaticBearerUpdate {
                token: Some(Secret::new("x")),
            }),
            &mut auth,
            &mut secrets,
        )
        .unwrap_err();
        assert!(wrong.starts_with("auth.type:"), "{wrong}");
        assert_eq!(secrets.token, None, "a refused update changes nothing");
    }

    #[test]
    fn a_token_endpoint_without_client_auth_takes_no_secret() {
        let (mut auth, mut secrets) = oauth(serde_json::json!({
            "access_token": "a1", "mcp_server_url": "https://m.example/",
            "refresh": {"client_id": "c", "refresh_token": "r1", "token_endpoint": "https://t.example/",
                        "token_endpoint_auth": {"type": "none"}}}));
        assert_eq!(secrets.client_secret, None);
        let u: McpOauthUpdate = serde_json::from_value(serde_json::json!({
            "refresh": {"token_endpoint_auth": {"type": "client_secret_post", "client_secret": "s"}}}))
        .unwrap();
        let err = update(UpdateAuth::McpOauth(u), &mut auth, &mut secrets).unwrap_err();
        assert!(err.starts_with("auth.refresh.token_endpoint_auth"), "{err}");
    }
}
