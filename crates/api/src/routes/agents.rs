//! `/v1/agents`: create, retrieve, update (new immutable version), list, archive, versions.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};

use agentd_catalog::AgentFilter;
use agentd_wire::agent::{
    AGENT_TOOLSET_20260401_TOOLS, AgentRef, AgentSpec, AgentTag, CreateAgent, ExecutionIdentity,
    McpServer, McpToolset, Multiagent, MultiagentParams, RosterEntryParam, RosterMember,
    RosterParam, SelfRef, SelfTag, Tool, Toolset, UpdateAgent,
};
use agentd_wire::{Agent, Page};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Body, Query};
use crate::limits;
use crate::routes::page;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/agents", post(create).get(list))
        .route("/v1/agents/{id}", get(retrieve).post(update))
        .route("/v1/agents/{id}/archive", post(archive))
        .route("/v1/agents/{id}/versions", get(versions))
}

/// What serde cannot check: a usable model, sane tool names, the SDK's limits, and nothing
/// this agentd would store without acting on it.
pub fn validate(state: &AppState, spec: &AgentSpec) -> ApiResult<()> {
    if spec.name.trim().is_empty() {
        return Err(ApiError::invalid("name: must not be empty"));
    }
    if let Err(e) = state.models.resolve(&spec.model.id) {
        return Err(ApiError::invalid(format!("model: {e}")));
    }
    limits::metadata("metadata", &spec.metadata)?;
    unsupported(spec)?;
    validate_mcp_servers(&spec.mcp_servers)?;
    validate_tools(&spec.tools, &spec.mcp_servers)
}

/// The most characters of an MCP server's name (the SDK's limit).
const MCP_SERVER_NAME_CHARS: usize = 255;

/// Each server has a unique name and an http(s) URL with a host, which agentd connects to as
/// the MCP client.
fn validate_mcp_servers(servers: &[McpServer]) -> ApiResult<()> {
    let mut seen = std::collections::HashSet::new();
    for (i, s) in servers.iter().enumerate() {
        let n = s.name.chars().count();
        if n == 0 || n > MCP_SERVER_NAME_CHARS {
            return Err(ApiError::invalid(format!(
                "mcp_servers[{i}].name: must be 1-{MCP_SERVER_NAME_CHARS} characters"
            )));
        }
        if !seen.insert(s.name.as_str()) {
            return Err(ApiError::invalid(format!(
                "mcp_servers[{i}].name: {:?} is declared twice; server names must be unique",
                s.name
            )));
        }
        let url = url::Url::parse(&s.url).map_err(|e| {
            ApiError::invalid(format!(
                "mcp_servers[{i}].url: {:?} is not a URL: {e}",
                s.url
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ApiError::invalid(format!(
                "mcp_servers[{i}].url: {:?} must be an http or https URL with a host",
                s.url
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ApiError::invalid(format!(
                "mcp_servers[{i}].url: must not carry credentials; put them in a vault"
            )));
        }
    }
    Ok(())
}

/// An MCP toolset names one of the agent's servers, once, and configures each tool at most
/// once.
fn validate_mcp_toolset(
    at: &str,
    set: &McpToolset,
    servers: &[McpServer],
    used: &mut std::collections::HashSet<String>,
) -> ApiResult<()> {
    if !servers.iter().any(|s| s.name == set.mcp_server_name) {
        return Err(ApiError::invalid(format!(
            "{at}.mcp_server_name: {:?} names no server in mcp_servers",
            set.mcp_server_name
        )));
    }
    if !used.insert(set.mcp_server_name.clone()) {
        return Err(ApiError::invalid(format!(
            "{at}.mcp_server_name: the server {:?} has two mcp_toolset entries; list it once",
            set.mcp_server_name
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (j, c) in set.configs.iter().enumerate() {
        let at = format!("{at}.configs[{j}]");
        let n = c.name.chars().count();
        if n == 0 || n > limits::TOOL_NAME_CHARS {
            return Err(ApiError::invalid(format!(
                "{at}.name: must be 1-{} characters",
                limits::TOOL_NAME_CHARS
            )));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(ApiError::invalid(format!(
                "{at}.name: {:?} is configured twice",
                c.name
            )));
        }
        if let Some(k) = c.rest.keys().next() {
            return Err(ApiError::invalid(format!(
                "{at}.{k}: not a field of an MCP tool config"
            )));
        }
    }
    Ok(())
}

/// Fields an agent could carry that this agentd cannot act on: refused, so that no agent
/// appears to have what its runs would silently lack.
fn unsupported(spec: &AgentSpec) -> ApiResult<()> {
    if !spec.skills.is_empty() {
        return Err(ApiError::invalid(
            "skills: skills are not supported by this agentd yet; omit the field or send an empty list",
        ));
    }
    if let Ok(ExecutionIdentity::AwsRole { .. }) =
        serde_json::from_value::<ExecutionIdentity>(spec.execution_identity.clone())
    {
        return Err(ApiError::invalid(
            "execution_identity: aws_role is not supported by this agentd, whose runs carry no AWS principal; omit it or send {\"type\": \"service_account\"}",
        ));
    }
    Ok(())
}

/// Tool names, the number of tools, and toolset configs this agentd can honour.
fn validate_tools(tools: &[Tool], servers: &[McpServer]) -> ApiResult<()> {
    let mut mcp_used = std::collections::HashSet::new();
    let total: usize = tools
        .iter()
        .map(|t| match t {
            Tool::AgentToolset20260401(_) => AGENT_TOOLSET_20260401_TOOLS.len(),
            _ => 1,
        })
        .sum();
    if total > limits::TOOLS {
        return Err(ApiError::invalid(format!(
            "tools: {total} tools across all toolsets is over the limit of {}",
            limits::TOOLS
        )));
    }
    let mut seen = std::collections::HashSet::new();
    let mut toolset = false;
    for (i, t) in tools.iter().enumerate() {
        match t {
            Tool::Custom(c) => {
                let max = limits::TOOL_NAME_CHARS;
                let ok = !c.name.is_empty()
                    && c.name.len() <= max
                    && c.name
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
                if !ok {
                    return Err(ApiError::invalid(format!(
                        "tools[{i}].name: {:?} must be 1-{max} characters of letters, digits, '_' or '-'",
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
            Tool::AgentToolset20260401(set) => {
                if std::mem::replace(&mut toolset, true) {
                    return Err(ApiError::invalid(format!(
                        "tools[{i}]: agent_toolset_20260401 is listed twice; list it once and configure each tool in its configs"
                    )));
                }
                validate_toolset(&format!("tools[{i}]"), set)?;
            }
            Tool::McpToolset(set) => {
                validate_mcp_toolset(&format!("tools[{i}]"), set, servers, &mut mcp_used)?;
            }
        }
    }
    Ok(())
}

fn validate_toolset(at: &str, set: &Toolset) -> ApiResult<()> {
    let mut seen = std::collections::HashSet::new();
    for (j, c) in set.configs.iter().enumerate() {
        let at = format!("{at}.configs[{j}]");
        if !AGENT_TOOLSET_20260401_TOOLS.contains(&c.name.as_str()) {
            return Err(ApiError::invalid(format!(
                "{at}.name: {:?} is not a tool of agent_toolset_20260401; expected one of {}",
                c.name,
                AGENT_TOOLSET_20260401_TOOLS.join(", ")
            )));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(ApiError::invalid(format!(
                "{at}.name: {:?} is configured twice",
                c.name
            )));
        }
        for (k, v) in &c.rest {
            if k == "type" && v.as_str() == Some(c.name.as_str()) {
                continue;
            }
            if k == "type" {
                return Err(ApiError::invalid(format!(
                    "{at}.type: must equal the name {:?}",
                    c.name
                )));
            }
            return Err(ApiError::invalid(format!(
                "{at}.{k}: not supported by this agentd yet; omit it"
            )));
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
