//! `/v1/agents`: create, retrieve, update (new immutable version), list, archive, versions.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use agentd_catalog::AgentFilter;
use agentd_wire::agent::{
    AgentRef, AgentSpec, AgentTag, CreateAgent, Multiagent, MultiagentParams, RosterEntryParam,
    RosterMember, RosterParam, SelfRef, SelfTag, Tool, UpdateAgent,
};
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

/// The most agents a roster may list.
const MAX_ROSTER: usize = 20;

/// Check a roster as sent and pin each entry to a version: an agent named by id alone is
/// pinned to its latest version now. `own_id` is the agent the roster belongs to, when it
/// exists already.
async fn resolve_roster(
    st: &AppState,
    ws: &str,
    own_id: Option<&str>,
    m: MultiagentParams,
) -> ApiResult<Multiagent> {
    let entries = match m {
        MultiagentParams::Coordinator { agents } => agents,
        MultiagentParams::Multiagent20261001 { .. } => {
            return Err(ApiError::invalid(
                "multiagent: type multiagent_20261001 is not supported by this agentd; use {\"type\": \"coordinator\", \"agents\": [...]}",
            ));
        }
    };
    if entries.is_empty() || entries.len() > MAX_ROSTER {
        return Err(ApiError::invalid(format!(
            "multiagent.agents: must list 1 to {MAX_ROSTER} agents, not {}",
            entries.len()
        )));
    }
    let mut seen: Vec<String> = Vec::new();
    let mut members = Vec::with_capacity(entries.len());
    for (i, e) in entries.into_iter().enumerate() {
        let at = format!("multiagent.agents[{i}]");
        let (id, version) = match e {
            RosterParam::Id(id) => (Some(id), None),
            RosterParam::Entry(RosterEntryParam::Agent { id, version }) => (Some(id), version),
            RosterParam::Entry(RosterEntryParam::Myself {}) => (None, None),
            RosterParam::Entry(RosterEntryParam::Advisor { .. }) => {
                return Err(ApiError::invalid(format!(
                    "{at}: advisor entries are not supported by this agentd"
                )));
            }
        };
        let is_self = id.is_none() || id.as_deref() == own_id;
        let key = if is_self {
            "self".to_owned()
        } else {
            id.clone().unwrap_or_default()
        };
        if seen.contains(&key) {
            return Err(ApiError::invalid(format!(
                "{at}: {} is listed twice; each agent may appear once",
                if is_self {
                    "this agent (self)"
                } else {
                    key.as_str()
                }
            )));
        }
        seen.push(key);
        if is_self {
            members.push(RosterMember::Myself(SelfRef {
                kind: SelfTag::Myself,
            }));
            continue;
        }
        let id = id.unwrap_or_default();
        let agent = match st.store.get_agent(ws, &id, version).await {
            Ok(a) => a,
            Err(agentd_catalog::Error::NotFound(m)) => {
                return Err(ApiError::invalid(format!("{at}: {m}")));
            }
            Err(e) => return Err(e.into()),
        };
        if agent.archived_at.is_some() {
            return Err(ApiError::invalid(format!(
                "{at}: agent {id} is archived and cannot be on a roster"
            )));
        }
        if agent.spec.multiagent.is_some() {
            return Err(ApiError::invalid(format!(
                "{at}: agent {id} has a multiagent roster of its own; rosters are one level deep"
            )));
        }
        members.push(RosterMember::Ref(AgentRef {
            kind: AgentTag::Agent,
            id,
            version: agent.version,
        }));
    }
    Ok(Multiagent::Coordinator { agents: members })
}

async fn create(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Body(req): Body<CreateAgent>,
) -> ApiResult<Json<Agent>> {
    let (mut spec, roster) = req.into_parts();
    if let Some(m) = roster {
        spec.multiagent = Some(resolve_roster(&st, &ws.id, None, m).await?);
    }
    validate(&st, &spec)?;
    Ok(Json(st.store.create_agent(&ws.id, spec).await?.shown()))
}

async fn retrieve(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Json<Agent>> {
    Ok(Json(
        st.store
            .get_agent(&ws.id, &id, q.u32("version")?)
            .await?
            .shown(),
    ))
}

async fn update(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
    Body(mut req): Body<UpdateAgent>,
) -> ApiResult<Json<Agent>> {
    let expected = req.version;
    let roster = match req.multiagent.take() {
        Some(Some(m)) => Some(Some(resolve_roster(&st, &ws.id, Some(&id), m).await?)),
        Some(None) => Some(None),
        None => None,
    };
    let check = st.clone();
    let (agent, _changed) = st
        .store
        .update_agent(
            &ws.id,
            &id,
            expected,
            Box::new(move |base| {
                let mut next = req.apply(base);
                if let Some(m) = roster {
                    next.multiagent = m;
                }
                validate(&check, &next).map_err(|e| agentd_catalog::Error::Invalid(e.message))?;
                Ok(next)
            }),
        )
        .await?;
    Ok(Json(agent.shown()))
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
        page: q.id_page(agentd_wire::ids::Kind::Agent)?,
    };
    Ok(Json(page(
        st.store.list_agents(&ws.id, f).await?,
        Agent::shown,
    )))
}

async fn archive(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Agent>> {
    Ok(Json(st.store.archive_agent(&ws.id, &id).await?.shown()))
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
    Ok(Json(page(p, Agent::shown)))
}
