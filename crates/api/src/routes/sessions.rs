//! `/v1/sessions`: create, retrieve, list, update, archive, delete.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use agentd_catalog::{NewSession, SessionFilter};
use agentd_wire::agent::AgentTag;
use agentd_wire::agent::SessionAgent;
use agentd_wire::session::{AgentParam, CreateSession, UpdateSession};
use agentd_wire::{Page, Session, SessionStatus};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query, parse_at};
use crate::limits;
use crate::routes::{Deleted, page};
use crate::user_events::{file_rubrics, user_events, validate_events};
use agentd_wire::agent::{Multiagent, RosterMember};
use serde_json::Value;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions", post(create).get(list))
        .route(
            "/v1/sessions/{id}",
            get(retrieve).post(update).delete(delete),
        )
        .route("/v1/sessions/{id}/archive", post(archive))
}

async fn create(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Body(mut body): Body<serde_json::Value>,
) -> ApiResult<Json<Session>> {
    let (agent, initial) = match body.as_object_mut() {
        Some(o) => (o.remove("agent"), o.remove("initial_events")),
        None => (None, None),
    };
    let initial = match initial {
        Some(serde_json::Value::Array(events)) => {
            limits::count("initial_events", events.len(), limits::INITIAL_EVENTS)?;
            user_events(events, "initial_events")?
        }
        Some(serde_json::Value::Null) | None => vec![],
        Some(_) => {
            return Err(ApiError::invalid(
                "initial_events: expected an array of events",
            ));
        }
    };
    let mut req: CreateSession = parse_at(body, "")?;
    req.initial_events = initial;
    limits::metadata("metadata", &req.metadata)?;
    let agent = session_agent(&st, &ws.id, agent_param(agent)?).await?;
    if req.budget.is_some() {
        return Err(ApiError::invalid(
            "budget: spending limits are not supported by this agentd yet",
        ));
    }
    if !req.vault_ids.is_empty() && st.vault.is_none() {
        return Err(ApiError::invalid(
            "vault_ids: vaults are not configured on this server",
        ));
    }
    limits::count("vault_ids", req.vault_ids.len(), limits::SESSION_VAULTS)?;
    let (resources, sealed_tokens) =
        crate::routes::resources::parse_all(&st, &ws.id, req.resources).await?;
    mcp_reachable(&st, &ws.id, &req.environment_id, &agent).await?;
    repositories_reachable(&st, &ws.id, &req.environment_id, &resources).await?;
    validate_events(&st, None, &req.initial_events, "initial_events").await?;
    let initial = file_rubrics(&st, &ws.id, req.initial_events, "initial_events").await?;
    let (batch, wakes) = agentd_session::inbox::initial(initial);
    let session = st
        .store
        .create_session(
            &ws.id,
            NewSession {
                agent,
                environment_id: req.environment_id,
                title: req.title,
                metadata: req.metadata,
                vault_ids: req.vault_ids,
                resources,
                sealed_tokens,
            },
            batch,
        )
        .await?;
    if wakes {
        st.runner.notify(&session.id);
    }
    Ok(Json(session))
}

/// Refuse a session whose environment's networking can never let agentd reach one of its
/// agent's MCP servers: known now, it would otherwise surface only as a failing tool.
async fn mcp_reachable(
    st: &AppState,
    ws: &str,
    environment_id: &str,
    agent: &SessionAgent,
) -> ApiResult<()> {
    if agent.spec.mcp_servers.is_empty() {
        return Ok(());
    }
    // A missing environment is the store's error to report, when the session is made.
    let Ok(env) = st.store.get_environment(ws, environment_id).await else {
        return Ok(());
    };
    for (i, s) in agent.spec.mcp_servers.iter().enumerate() {
        if let Some(why) = agentd_mcp::refusal(&env.config, &s.url, &[]) {
            return Err(ApiError::invalid(format!(
                "agent.mcp_servers[{i}].url: the MCP server {:?} cannot be reached from environment {environment_id}: {why}",
                s.name
            )));
        }
    }
    Ok(())
}

/// Refuse a repository resource on a `self_hosted` environment: its worker runs the tools on
/// its own machine, where agentd's egress proxy cannot add the token, and the token must not
/// travel there.
async fn repositories_reachable(
    st: &AppState,
    ws: &str,
    environment_id: &str,
    resources: &[agentd_wire::resource::Resource],
) -> ApiResult<()> {
    let Some(i) = resources
        .iter()
        .position(|r| matches!(r, agentd_wire::resource::Resource::GithubRepository(_)))
    else {
        return Ok(());
    };
    // A missing environment is the store's error to report, when the session is made.
    let Ok(env) = st.store.get_environment(ws, environment_id).await else {
        return Ok(());
    };
    if matches!(
        env.config,
        agentd_wire::environment::EnvironmentConfig::SelfHosted {}
    ) {
        return Err(ApiError::invalid(format!(
            "resources[{i}].type: environment {environment_id} is self_hosted, and its worker runs the tools on its own machine, where agentd cannot add the repository's token; clone it on the worker's side, or use a cloud environment"
        )));
    }
    Ok(())
}

/// `agent` of a session create, parsed by its form so an error names its path.
fn agent_param(v: Option<Value>) -> ApiResult<AgentParam> {
    let types = AgentParam::TYPES.join(", ");
    let p = match v {
        Some(Value::String(id)) => AgentParam::Id(id),
        Some(Value::Object(mut o)) => {
            let kind = match o.remove("type") {
                Some(Value::String(t)) => t,
                None => {
                    return Err(ApiError::invalid(format!(
                        "agent.type: missing; expected one of {types}"
                    )));
                }
                Some(other) => {
                    return Err(ApiError::invalid(format!(
                        "agent.type: {other} is not one of {types}"
                    )));
                }
            };
            let rest = Value::Object(o);
            match kind.as_str() {
                "agent" => AgentParam::Agent(parse_at(rest, "agent")?),
                "agent_with_overrides" => AgentParam::WithOverrides(parse_at(rest, "agent")?),
                other => {
                    return Err(ApiError::invalid(format!(
                        "agent.type: {other:?} is not one of {types}"
                    )));
                }
            }
        }
        None => {
            return Err(ApiError::invalid(
                "agent: missing; expected an agent id or an object such as {\"type\": \"agent\", \"id\": ...}",
            ));
        }
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "agent: {other} is neither an agent id nor an object whose type is one of {types}"
            )));
        }
    };
    Ok(p)
}

/// The agent version a session will run, with any overrides applied and its roster pinned.
async fn session_agent(st: &AppState, ws: &str, p: AgentParam) -> ApiResult<SessionAgent> {
    let (agent_id, version, overrides) = match p {
        AgentParam::Id(id) => (id, None, None),
        AgentParam::Agent(a) => (a.id, a.version, None),
        AgentParam::WithOverrides(o) => (o.id.clone(), o.version, Some(o)),
    };
    if version == Some(0) {
        return Err(ApiError::invalid("agent.version: must be at least 1"));
    }
    let mut agent = st
        .store
        .get_agent(ws, &agent_id, version)
        .await
        .map_err(|e| match e {
            agentd_catalog::Error::NotFound(m) => ApiError::not_found(format!("agent: {m}")),
            other => other.into(),
        })?;
    if agent.archived_at.is_some() {
        return Err(ApiError::invalid(format!(
            "agent: {agent_id} is archived; sessions cannot start with it"
        )));
    }
    if let Some(o) = overrides {
        if let Some(Some(system)) = &o.system {
            let n = system.chars().count();
            if n > limits::SYSTEM_CHARS {
                return Err(ApiError::invalid(format!(
                    "agent.system: {n} characters is over the limit of {}",
                    limits::SYSTEM_CHARS
                )));
            }
        }
        agent.spec = o.apply(&agent.spec);
        crate::routes::agents::validate(st, &agent.spec)
            .map_err(|e| ApiError::invalid(format!("agent.{}", e.message)))?;
    }
    pin(st, ws, agent).await
}

/// The agent a session runs, with its roster pinned whole: each member's definition is copied
/// in, so later versions of those agents do not change a running session.
async fn pin(st: &AppState, ws: &str, agent: agentd_wire::Agent) -> ApiResult<SessionAgent> {
    let mut spec = agent.spec;
    if let Some(Multiagent::Coordinator { agents }) = &mut spec.multiagent {
        for m in agents.iter_mut() {
            let (id, version) = match m {
                RosterMember::Ref(r) => (r.id.clone(), r.version),
                RosterMember::Myself(_) => (agent.id.clone(), agent.version),
                RosterMember::Pinned(_) => continue,
            };
            let a = st.store.get_agent(ws, &id, Some(version)).await?;
            let mut member = a.spec;
            // Rosters are one level deep: a member never starts threads of its own.
            member.multiagent = None;
            member.metadata.clear();
            *m = RosterMember::Pinned(Box::new(SessionAgent {
                id: a.id,
                kind: AgentTag::Agent,
                version: a.version,
                spec: member,
            }));
        }
    }
    Ok(SessionAgent {
        id: agent.id,
        kind: AgentTag::Agent,
        version: agent.version,
        spec,
    })
}

async fn retrieve(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Session>> {
    Ok(Json(st.store.get_session(&ws.id, &id).await?))
}

async fn list(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    q: Query,
) -> ApiResult<Json<Page<Session>>> {
    // Memory stores and deployments do not exist here: filtering by one would answer an
    // empty list that looks like a real answer.
    for f in ["memory_store_id", "deployment_id"] {
        if q.get(f).is_some() {
            return Err(ApiError::invalid(format!(
                "{f}: this filter is not supported by this agentd yet"
            )));
        }
    }
    let statuses = q
        .all("statuses")
        .into_iter()
        .map(|s| {
            SessionStatus::parse(&s).ok_or_else(|| {
                ApiError::invalid(format!(
                    "statuses: {s:?} is not one of rescheduling, running, idle, terminated"
                ))
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let f = SessionFilter {
        agent_id: q.get("agent_id").map(str::to_owned),
        agent_version: q.u32("agent_version")?,
        statuses,
        include_archived: q.flag("include_archived")?,
        created_at_gt: q.time("created_at[gt]")?,
        created_at_gte: q.time("created_at[gte]")?,
        created_at_lt: q.time("created_at[lt]")?,
        created_at_lte: q.time("created_at[lte]")?,
        order: q.order()?,
        limit: q.limit()?,
        page: q.id_page(agentd_wire::ids::Kind::Session)?,
    };
    Ok(Json(page(st.store.list_sessions(&ws.id, f).await?, |s| s)))
}

async fn update(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
    Body(req): Body<UpdateSession>,
) -> ApiResult<Json<Session>> {
    // The SDK documents `vault_ids` on update as reserved: requests setting it are rejected.
    if req.vault_ids.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::invalid(
            "vault_ids: a session's vaults are set when it is created and cannot be updated",
        ));
    }
    if let Some(patch) = &req.metadata {
        // Checked against the bag as it stands; a concurrent patch may slip past the count.
        let mut bag = st.store.get_session(&ws.id, &id).await?.metadata;
        agentd_wire::agent::merge_metadata(&mut bag, patch.clone());
        limits::metadata("metadata", &bag)?;
    }
    Ok(Json(
        st.store
            .update_session(&ws.id, &id, req.title, req.metadata)
            .await?,
    ))
}

async fn archive(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Session>> {
    // The session's own first (not found is a 404 before anything is stopped).
    st.store.get_session(&ws.id, &id).await?;
    let harness = st.runner.harness();
    if let Some(sb) = harness.sandboxes() {
        sb.release_session(&id).await;
    }
    harness.mcp().forget(&id);
    // Its last outputs are collected before it is archived: a crash in between leaves it
    // unarchived, and archiving again collects again.
    harness
        .collect_outputs(&id)
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot collect the session's outputs: {e}")))?;
    // A self_hosted session's worker may be running calls: they are answered first, so no
    // worker runs them again, and the model is not left waiting on them.
    if crate::worker_calls::self_hosted(&st, &id).await? {
        crate::worker_calls::close(&st, &id, crate::worker_calls::Closed::Archived).await?;
    }
    let s = st.store.archive_session(&ws.id, &id).await?;
    // A self_hosted session's worker learns of the stop from its next heartbeat.
    for w in st.store.session_work(&id).await? {
        if w.state.is_live() {
            st.store
                .update_work(
                    &w.id,
                    Box::new(|i| i.request_stop(chrono::Utc::now(), false).is_ok()),
                )
                .await?;
        }
    }
    // A call the model made between the answers above and the archive queued an item the
    // stop just ended: answer it too, and wake the session to go on without it.
    if crate::worker_calls::self_hosted(&st, &id).await?
        && crate::worker_calls::close(&st, &id, crate::worker_calls::Closed::Archived).await?
    {
        st.runner.notify(&id);
    }
    Ok(Json(s))
}

async fn delete(
    State(st): State<AppState>,
    Extension(Caller(ws)): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    st.store.delete_session(&ws.id, &id).await?;
    st.runner.forget(&id);
    st.runner.harness().mcp().forget(&id);
    if let Some(sb) = st.runner.harness().sandboxes() {
        sb.destroy(&id).await;
    }
    Ok(Json(Deleted {
        id,
        kind: "session_deleted",
    }))
}
