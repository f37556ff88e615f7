//! `/v1/vaults`: create, retrieve, update, list, archive, delete.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use agentd_wire::Page;
use agentd_wire::ids::Kind;
use agentd_wire::vault::{CreateVault, UpdateVault, Vault, VaultTag};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query};
use crate::limits;
use crate::routes::{Deleted, page};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/vaults", post(create).get(list))
        .route("/v1/vaults/{id}", get(retrieve).post(update).delete(delete))
        .route("/v1/vaults/{id}/archive", post(archive))
}

/// 1 to 255 characters, not only blanks.
pub(crate) fn display_name(field: &str, n: &str) -> ApiResult<()> {
    if n.trim().is_empty() || n.chars().count() > 255 {
        return Err(ApiError::invalid(format!(
            "{field}: must be 1 to 255 characters"
        )));
    }
    Ok(())
}

async fn create(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Body(req): Body<CreateVault>,
) -> ApiResult<Json<Vault>> {
    display_name("display_name", &req.display_name)?;
    limits::metadata("metadata", &req.metadata)?;
    let v = st
        .store
        .create_vault(
            &ws.id,
            Box::new(move |id, now| Vault {
                id,
                kind: VaultTag::Vault,
                display_name: req.display_name,
                metadata: req.metadata,
                created_at: now,
                updated_at: now,
                archived_at: None,
            }),
        )
        .await?;
    Ok(Json(v))
}

async fn retrieve(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vault>> {
    Ok(Json(st.store.get_vault(&ws.id, &id).await?))
}

async fn update(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
    Body(req): Body<UpdateVault>,
) -> ApiResult<Json<Vault>> {
    if let Some(n) = &req.display_name {
        display_name("display_name", n)?;
    }
    let v = st
        .store
        .update_vault(
            &ws.id,
            &id,
            Box::new(move |v| {
                if let Some(n) = req.display_name {
                    v.display_name = n;
                }
                if let Some(m) = req.metadata {
                    agentd_wire::agent::merge_metadata(&mut v.metadata, m);
                    limits::metadata("metadata", &v.metadata)
                        .map_err(|e| agentd_catalog::Error::Invalid(e.message))?;
                }
                Ok(())
            }),
        )
        .await?;
    Ok(Json(v))
}

async fn list(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    q: Query,
) -> ApiResult<Json<Page<Vault>>> {
    let p = st
        .store
        .list_vaults(
            &ws.id,
            q.flag("include_archived")?,
            q.limit()?,
            q.id_page(Kind::Vault)?,
        )
        .await?;
    Ok(Json(page(p, |v| v)))
}

async fn archive(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vault>> {
    let v = st.store.archive_vault(&ws.id, &id).await?;
    crate::routes::credentials::renew_sandboxes(&st, &ws.id, &id).await;
    Ok(Json(v))
}

async fn delete(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    st.store.delete_vault(&ws.id, &id).await?;
    crate::routes::credentials::renew_sandboxes(&st, &ws.id, &id).await;
    Ok(Json(Deleted {
        id,
        kind: "vault_deleted",
    }))
}
