//! `/v1/agents`: create, retrieve, update (new immutable version), list, archive, versions.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use agentd_store::AgentFilter;
use agentd_wire::agent::{AgentSpec, CreateAgent, Tool, UpdateAgent};
use agentd_wire::{Agent, Page};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query};
use crate::routes::page;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/agents", post(create).get(list))
        .route("/v1/agents/{id}", get(retrieve).post(update))
        .route("/v1/agents/{id}/archive", post(archive))
        .route("/v1/agents/{id}/versions", get(versions))
}

/// What serde cannot check: a usable model, sane tool names.
pub fn validate(state: &AppState, spec: &AgentSpec) -> ApiResult<()> {
    if spec.name.trim().is_empty() {
        return Err(ApiError::invalid("name: must not be empty"));
    }
    if let Err(e) = state.models.resolve(&spec.model.id) {
        return Err(ApiError::invalid(format!("model: {e}")));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in spec.tools.iter().enumerate() {
        if let Tool::Custom(c) = t {
            let ok = !c.name.is_empty()
                && c.name.len() <= 64
                && c.name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
            if !ok {
                return Err(ApiError::invalid(format!(
                    "tools[{i}].name: {:?} must be 1-64 characters of letters, digits, '_' or '-'",
                    c.name
                )));
            }
            if !seen.insert(c.name.clone()) {
                return Err(ApiError::invalid(format!(
                    "tools[{i}].name: {:?} is declared twice",
                    c.name
                )));
            }
        }
    }
    Ok(())
}

async fn create(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Body(req): Body<CreateAgent>,
) -> ApiResult<Json<Agent>> {
    let spec = req.into_spec();
    validate(&st, &spec)?;
    Ok(Json(st.store.create_agent(&ws.id, spec).await?))
}

async fn retrieve(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Json<Agent>> {
    Ok(Json(
        st.store.get_agent(&ws.id, &id, q.u32("version")?).await?,
    ))
}

async fn update(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
    Body(req): Body<UpdateAgent>,
) -> ApiResult<Json<Agent>> {
    let expected = req.version;
    let check = st.clone();
    let (agent, _changed) = st
        .store
        .update_agent(&ws.id, &id, expected, move |base| {
            let next = req.apply(base);
            validate(&check, &next).map_err(|e| agentd_store::Error::Invalid(e.message))?;
            Ok(next)
        })
        .await?;
    Ok(Json(agent))
}

async fn list(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    q: Query,
) -> ApiResult<Json<Page<Agent>>> {
    let f = AgentFilter {
        include_archived: q.flag("include_archived")?,
        created_at_gte: q.time("created_at[gte]")?,
        created_at_lte: q.time("created_at[lte]")?,
        limit: q.limit()?,
        page: q.page(),
    };
    Ok(Json(page(st.store.list_agents(&ws.id, f).await?, |a| a)))
}

async fn archive(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Agent>> {
    Ok(Json(st.store.archive_agent(&ws.id, &id).await?))
}

async fn versions(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Json<Page<Agent>>> {
    let p = st
        .store
        .list_agent_versions(&ws.id, &id, q.limit()?, q.page())
        .await?;
    Ok(Json(page(p, |a| a)))
}
