//! `/v1/vaults/{vault_id}/credentials`: create, retrieve, update, list, archive, delete and
//! `mcp_oauth_validate`. Secrets are accepted here, sealed at once with the vault key, and
//! never returned: a response carries the stored `Credential`, which has no secret fields.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::Value;

use agentd_catalog::StoredCredential;
use agentd_vault::params::{self, CreateAuth, UpdateAuth};
use agentd_vault::{Sealer, Secrets};
use agentd_wire::Page;
use agentd_wire::ids::Kind;
use agentd_wire::vault::{Credential, CredentialTag, CredentialValidation};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query, parse_at};
use crate::limits;
use crate::routes::vaults::display_name;
use crate::routes::{Deleted, page};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/vaults/{vault_id}/credentials", post(create).get(list))
        .route(
            "/v1/vaults/{vault_id}/credentials/{id}",
            get(retrieve).post(update).delete(delete),
        )
        .route(
            "/v1/vaults/{vault_id}/credentials/{id}/archive",
            post(archive),
        )
        .route(
            "/v1/vaults/{vault_id}/credentials/{id}/mcp_oauth_validate",
            post(validate),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRest {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRest {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, Option<String>>>,
}

fn not_configured() -> ApiError {
    ApiError::new(
        agentd_wire::ErrorKind::ApiError,
        "vaults are not configured on this server",
    )
}

/// The sealer, once its key is known to be the database's: the first secret stored fixes the
/// key every process sharing the database must hold. Checked at every write, not once: a
/// rotation (`agentd vault rotate-key`) while this process serves changes the database's key,
/// and a secret sealed after it with the old one would not open with the new.
pub(crate) async fn bound_sealer(st: &AppState) -> ApiResult<Sealer> {
    let v = st.vault.as_ref().ok_or_else(not_configured)?;
    agentd_vault::bind_key(st.store.as_ref(), &v.sealer)
        .await
        .map_err(|e| match e {
            agentd_vault::KeyError::Storage(e) => e.into(),
            e => {
                tracing::error!(error = %e, "vault key");
                ApiError::new(agentd_wire::ErrorKind::ApiError, e.to_string())
            }
        })?;
    Ok(v.sealer.clone())
}

/// `auth` parsed on its own; a missing field is named by its whole path (`auth.token`), as
/// serde names only the object that lacks it.
fn parse_auth<T: serde::de::DeserializeOwned>(v: Value) -> ApiResult<T> {
    parse_at(v, "auth").map_err(|mut e| {
        if let Some((path, rest)) = e.message.split_once(": missing field `")
            && let Some(field) = rest.strip_suffix('`')
        {
            e.message = format!("{path}.{field}: missing");
        }
        e
    })
}

/// `auth`'s `type`, taken out so the rest parses as that kind's fields.
fn kind(v: Value) -> ApiResult<(String, Value)> {
    let Value::Object(mut o) = v else {
        return Err(ApiError::invalid("auth: expected an object"));
    };
    match o.remove("type") {
        Some(Value::String(t)) if params::TYPES.contains(&t.as_str()) => Ok((t, Value::Object(o))),
        Some(Value::String(t)) => Err(ApiError::invalid(format!(
            "auth.type: {t:?} is not one of {}",
            params::TYPES.join(", ")
        ))),
        _ => Err(ApiError::invalid(format!(
            "auth.type: missing; expected one of {}",
            params::TYPES.join(", ")
        ))),
    }
}

fn create_auth(v: Value) -> ApiResult<CreateAuth> {
    let (t, rest) = kind(v)?;
    Ok(match t.as_str() {
        "mcp_oauth" => CreateAuth::McpOauth(parse_auth(rest)?),
        "static_bearer" => CreateAuth::StaticBearer(parse_auth(rest)?),
        _ => CreateAuth::EnvironmentVariable(parse_auth(rest)?),
    })
}

fn update_auth(v: Value) -> ApiResult<UpdateAuth> {
    let (t, rest) = kind(v)?;
    Ok(match t.as_str() {
        "mcp_oauth" => UpdateAuth::McpOauth(parse_auth(rest)?),
        "static_bearer" => UpdateAuth::StaticBearer(parse_auth(rest)?),
        _ => UpdateAuth::EnvironmentVariable(parse_auth(rest)?),
    })
}

/// `auth` taken out of an object body, so it is parsed (and its errors named) on its own.
fn split(body: &mut Value) -> Option<Value> {
    body.as_object_mut().and_then(|o| o.remove("auth"))
}

async fn create(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(vault): Path<String>,
    Body(mut body): Body<Value>,
) -> ApiResult<Json<Credential>> {
    let auth = split(&mut body).ok_or_else(|| ApiError::invalid("auth: missing"))?;
    let rest: CreateRest = parse_at(body, "")?;
    let auth = create_auth(auth)?;
    if let Some(n) = &rest.display_name {
        display_name("display_name", n)?;
    }
    limits::metadata("metadata", &rest.metadata)?;
    let (auth, secrets) = params::create(auth).map_err(ApiError::invalid)?;
    let sealer = bound_sealer(&st).await?;
    let vault_id = vault.clone();
    let s = st
        .store
        .create_credential(
            &ws.id,
            &vault,
            Box::new(move |id, now| {
                let sealed = sealer.seal_secrets(&id, &secrets);
                Ok(StoredCredential {
                    credential: Credential {
                        id,
                        kind: CredentialTag::VaultCredential,
                        vault_id,
                        display_name: rest.display_name,
                        auth,
                        metadata: rest.metadata,
                        created_at: now,
                        updated_at: now,
                        archived_at: None,
                    },
                    sealed,
                })
            }),
        )
        .await?;
    Ok(Json(s.credential))
}

async fn retrieve(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path((vault, id)): Path<(String, String)>,
) -> ApiResult<Json<Credential>> {
    Ok(Json(
        st.store
            .get_credential(&ws.id, &vault, &id)
            .await?
            .credential,
    ))
}

async fn update(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path((vault, id)): Path<(String, String)>,
    Body(mut body): Body<Value>,
) -> ApiResult<Json<Credential>> {
    let auth = split(&mut body);
    let rest: UpdateRest = parse_at(body, "")?;
    let auth = auth.map(update_auth).transpose()?;
    if let Some(n) = &rest.display_name {
        display_name("display_name", n)?;
    }
    let sealer = bound_sealer(&st).await?;
    let s = st
        .store
        .update_credential(
            &ws.id,
            &vault,
            &id,
            Box::new(move |s| {
                let invalid = agentd_catalog::Error::Invalid;
                if let Some(a) = auth {
                    let mut secrets: Secrets = sealer
                        .open_secrets(&s.credential.id, &s.sealed)
                        .map_err(|e| agentd_catalog::Error::Storage(e.to_string()))?;
                    let before = secrets.clone();
                    params::update(a, &mut s.credential.auth, &mut secrets).map_err(invalid)?;
                    // Resealed only on a change: a fresh nonce would count as one.
                    if secrets != before {
                        s.sealed = sealer.seal_secrets(&s.credential.id, &secrets);
                    }
                }
                if let Some(n) = rest.display_name {
                    s.credential.display_name = Some(n);
                }
                if let Some(m) = rest.metadata {
                    agentd_wire::agent::merge_metadata(&mut s.credential.metadata, m);
                    limits::metadata("metadata", &s.credential.metadata)
                        .map_err(|e| invalid(e.message))?;
                }
                Ok(())
            }),
        )
        .await?;
    renew_sandboxes(&st, &ws.id, &vault).await;
    Ok(Json(s.credential))
}

/// A vault's secrets changed (a credential updated, archived or deleted; the vault archived or
/// deleted): the live sandboxes of the sessions using it go, once their call is over, so no
/// proxy keeps writing a secret its credential no longer allows. Their next call gets a fresh
/// sandbox with the vault as it is now. (Sandboxes of other processes sharing the database
/// keep theirs until they are next made.)
pub(crate) async fn renew_sandboxes(st: &AppState, ws: &str, vault: &str) {
    let Some(sb) = st.runner.harness().sandboxes() else {
        return;
    };
    for sid in sb.live_sessions() {
        if let Ok(s) = st.store.get_session(ws, &sid).await
            && s.vault_ids.iter().any(|v| v == vault)
        {
            sb.renew_session(&sid).await;
        }
    }
}

async fn list(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(vault): Path<String>,
    q: Query,
) -> ApiResult<Json<Page<Credential>>> {
    let p = st
        .store
        .list_credentials(
            &ws.id,
            &vault,
            q.flag("include_archived")?,
            q.limit()?,
            q.id_page(Kind::Credential)?,
        )
        .await?;
    Ok(Json(page(p, |s| s.credential)))
}

async fn archive(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path((vault, id)): Path<(String, String)>,
) -> ApiResult<Json<Credential>> {
    let c = st.store.archive_credential(&ws.id, &vault, &id).await?;
    renew_sandboxes(&st, &ws.id, &vault).await;
    Ok(Json(c.credential))
}

async fn delete(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path((vault, id)): Path<(String, String)>,
) -> ApiResult<Json<Deleted>> {
    st.store.delete_credential(&ws.id, &vault, &id).await?;
    renew_sandboxes(&st, &ws.id, &vault).await;
    Ok(Json(Deleted {
        id,
        kind: "vault_credential_deleted",
    }))
}

async fn validate(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path((vault, id)): Path<(String, String)>,
) -> ApiResult<Json<CredentialValidation>> {
    let resolver = st
        .vault
        .as_ref()
        .map(|v| v.resolver.clone())
        .ok_or_else(not_configured)?;
    let c = st.store.get_credential(&ws.id, &vault, &id).await?;
    if c.credential.auth.kind() != "mcp_oauth" {
        return Err(ApiError::invalid(format!(
            "credential {id} is {}; only mcp_oauth credentials can be validated",
            c.credential.auth.kind()
        )));
    }
    if c.credential.archived_at.is_some() {
        return Err(ApiError::conflict(format!("credential {id} is archived")));
    }
    resolver
        .validate(&ws.id, &c)
        .await
        .map(Json)
        .map_err(|e| match e {
            agentd_vault::ResolveError::Storage(e) => e.into(),
            agentd_vault::ResolveError::Unreachable(why) => {
                ApiError::invalid(format!("auth.mcp_server_url: {why}"))
            }
            other => ApiError::new(agentd_wire::ErrorKind::ApiError, other.to_string()),
        })
}
