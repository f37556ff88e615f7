//! `/v1/environments`: create, retrieve, update, list, archive, delete.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use agentd_wire::environment::{
    CreateEnvironment, EnvironmentConfig, EnvironmentTag, Networking, UpdateEnvironment,
};
use agentd_wire::ids::Kind;
use agentd_wire::{Environment, Page};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query};
use crate::routes::{Deleted, page};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/environments", post(create).get(list))
        .route(
            "/v1/environments/{id}",
            get(retrieve).post(update).delete(delete),
        )
        .route("/v1/environments/{id}/archive", post(archive))
}

async fn create(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Body(req): Body<CreateEnvironment>,
) -> ApiResult<Json<Environment>> {
    if req.name.trim().is_empty() {
        return Err(ApiError::invalid("name: must not be empty"));
    }
    let config = req.config.map(|c| c.apply(None)).unwrap_or_default();
    config.validate().map_err(ApiError::invalid)?;
    reachable(&st, &config)?;
    let env = st
        .store
        .create_environment(
            &ws.id,
            Box::new(move |id, now| Environment {
                id,
                kind: EnvironmentTag::Environment,
                name: req.name,
                description: req.description,
                config,
                metadata: req.metadata,
                scope: req.scope,
                created_at: now,
                updated_at: now,
                archived_at: None,
            }),
        )
        .await?;
    Ok(Json(env))
}

/// Refuses `allowed_hosts` entries no sandbox may ever reach (this host, its link, private
/// space the operator did not open): a clear 400 now rather than a refusal at each connect.
fn reachable(st: &AppState, config: &EnvironmentConfig) -> ApiResult<()> {
    let EnvironmentConfig::Cloud {
        networking: Networking::Limited { allowed_hosts, .. },
        ..
    } = config
    else {
        return Ok(());
    };
    for (i, h) in allowed_hosts.iter().enumerate() {
        if let Some(why) = st.runner.harness().unreachable_host(h) {
            return Err(ApiError::invalid(format!(
                "config.networking.allowed_hosts[{i}]: {why}"
            )));
        }
    }
    Ok(())
}

async fn retrieve(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Environment>> {
    Ok(Json(st.store.get_environment(&ws.id, &id).await?))
}

async fn update(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
    Body(req): Body<UpdateEnvironment>,
) -> ApiResult<Json<Environment>> {
    if let Some(Some(n)) = &req.name
        && n.trim().is_empty()
    {
        return Err(ApiError::invalid("name: must not be empty"));
    }
    let state = st.clone();
    let env = st
        .store
        .update_environment(
            &ws.id,
            &id,
            Box::new(move |env| {
                if let Some(Some(n)) = req.name {
                    env.name = n;
                }
                if let Some(d) = req.description {
                    env.description = d;
                }
                if let Some(c) = req.config {
                    let config = c.map(|c| c.apply(Some(&env.config))).unwrap_or_default();
                    config.validate().map_err(agentd_catalog::Error::Invalid)?;
                    reachable(&state, &config)
                        .map_err(|e| agentd_catalog::Error::Invalid(e.message))?;
                    env.config = config;
                }
                if let Some(m) = req.metadata {
                    agentd_wire::agent::merge_metadata(&mut env.metadata, m);
                }
                if let Some(s) = req.scope {
                    env.scope = s;
                }
                Ok(())
            }),
        )
        .await?;
    Ok(Json(env))
}

async fn list(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    q: Query,
) -> ApiResult<Json<Page<Environment>>> {
    let p = st
        .store
        .list_environments(
            &ws.id,
            q.flag("include_archived")?,
            q.limit()?,
            q.id_page(Kind::Environment)?,
        )
        .await?;
    Ok(Json(page(p, |e| e)))
}

async fn archive(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Environment>> {
    Ok(Json(st.store.archive_environment(&ws.id, &id).await?))
}

async fn delete(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    st.store.delete_environment(&ws.id, &id).await?;
    Ok(Json(Deleted {
        id,
        kind: "environment_deleted",
    }))
}
