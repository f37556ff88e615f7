//! The agent's MCP tools: listed from their servers when a turn first needs them (agentd is the
//! MCP client), offered to the model as `mcp__<server>__<tool>`, and called when the model
//! asks. Listing happens just before the model request of a turn whose agent has an
//! `mcp_toolset`, every server at once, under the connect timeout; a session's list is then
//! kept in memory, so only its first turn (in this process) waits for its servers. A server
//! that cannot be listed is left out of that turn and logged as a `session.error`; the turns of
//! the next `Limits::retry_after` leave it out without waiting on it, and the first turn after
//! that tries it again.

use agentd_mcp::{Server, model_tool_name};
use agentd_models::ToolDef;
use agentd_session::{NewEvent, events};
use agentd_wire::agent::{McpToolset, PermissionPolicy, SessionAgent, Tool};
use agentd_wire::event::{Permission, RetryStatus, SessionErrorKind, SessionErrorObject};
use agentd_wire::{ContentBlock, EventBody};

use super::{Appended, Harness};
use crate::Result;
use crate::context::ToolWork;
use crate::tool_name::ToolName;

/// An enabled tool of one of the agent's MCP servers, as the model is offered it.
#[derive(Debug, Clone)]
pub(super) struct McpOffer {
    pub(super) server: String,
    pub(super) tool: String,
    pub(super) permission: Permission,
    /// Under the `auto` policy: each call is judged (`permission` is `Ask` until then).
    pub(super) auto: bool,
    pub(super) def: ToolDef,
}

impl Harness {
    /// The MCP tools the agent of log `log_id` (of session `session_id`) may call this turn.
    /// A server that cannot be listed gets a `session.error` appended; `tail` moves past it
    /// when it lands right after.
    pub(super) async fn mcp_offers(
        &self,
        log_id: &str,
        session_id: &str,
        agent: &SessionAgent,
        tail: &mut u64,
    ) -> Result<Vec<McpOffer>> {
        let sets: Vec<&McpToolset> = agent
            .spec
            .tools
            .iter()
            .filter_map(|t| match t {
                Tool::McpToolset(s) => Some(s),
                _ => None,
            })
            .collect();
        if sets.is_empty() {
            return Ok(Vec::new());
        }
        let env = match self.catalog.session_environment(session_id).await {
            Ok(env) => Some(env),
            Err(agentd_session::catalog::Error::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let listings = sets.iter().map(|set| {
            let server = agent
                .spec
                .mcp_servers
                .iter()
                .find(|s| s.name == set.mcp_server_name);
            let env = env.as_ref();
            async move {
                let Some(server) = server else {
                    return Err((
                        SessionErrorKind::McpConnectionFailedError,
                        format!(
                            "the agent has no MCP server named {:?}",
                            set.mcp_server_name
                        ),
                    ));
                };
                let Some(env) = env else {
                    return Err((
                        SessionErrorKind::McpConnectionFailedError,
                        "the session's environment cannot be read".to_owned(),
                    ));
                };
                let policy = agentd_mcp::policy_for(env, &server.url, &self.cfg.egress_private);
                let s = Server {
                    name: &server.name,
                    url: &server.url,
                };
                match self.mcp.tools(session_id, s, &policy).await {
                    Ok(t) => Ok(t),
                    // Already reported when it failed.
                    Err(agentd_mcp::Error::Unavailable { .. }) => Ok(Vec::new()),
                    Err(e @ agentd_mcp::Error::Auth { .. }) => Err((
                        SessionErrorKind::McpAuthenticationFailedError,
                        e.to_string(),
                    )),
                    Err(e) => Err((SessionErrorKind::McpConnectionFailedError, e.to_string())),
                }
            }
        });
        let listed = futures::future::join_all(listings).await;
        let mut offers = Vec::new();
        for (set, listed) in sets.iter().zip(listed) {
            match listed {
                Ok(tools) => offers.extend(offers_of(set, tools)),
                Err((kind, why)) => {
                    tracing::warn!(session = session_id, server = %set.mcp_server_name, error = %why, "cannot list MCP tools");
                    let err = listing_failed(set, kind, &why);
                    match self.append(log_id, events(vec![err])).await? {
                        Appended::Done(h) if h.last_seq == *tail + 1 => *tail = h.last_seq,
                        Appended::Done(_) | Appended::Stale | Appended::Terminated => {}
                    }
                }
            }
        }
        Ok(offers)
    }

    /// Make MCP call `w` of session `session_id`'s agent; the result's content and whether it
    /// is an error. Every failure is an error result the model reads.
    pub(super) async fn call_mcp(
        &self,
        log_id: &str,
        session_id: &str,
        w: &ToolWork,
    ) -> (Vec<ContentBlock>, bool) {
        let fail = |why: String| (vec![ContentBlock::text(why)], true);
        let ToolName::Mcp { server, tool } = &w.name else {
            return fail("not an MCP call".into());
        };
        let agent = match self.catalog.session_agent(log_id).await {
            Ok(a) => a,
            Err(e) => return fail(format!("Cannot read the session's agent: {e}")),
        };
        let Some(def) = agent.spec.mcp_servers.iter().find(|s| s.name == *server) else {
            return fail(format!("The agent has no MCP server named {server:?}."));
        };
        let env = match self.catalog.session_environment(session_id).await {
            Ok(env) => env,
            Err(e) => return fail(format!("Cannot read the session's environment: {e}")),
        };
        let policy = agentd_mcp::policy_for(&env, &def.url, &self.cfg.egress_private);
        let args = match &w.input {
            serde_json::Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        let s = Server {
            name: &def.name,
            url: &def.url,
        };
        match self.mcp.call(session_id, s, &policy, tool, args).await {
            Ok(r) => (r.content, r.is_error),
            Err(e) => fail(format!("{tool}: {e}")),
        }
    }
}

/// The enabled tools of `set`, as offered to the model.
fn offers_of(set: &McpToolset, tools: Vec<agentd_mcp::ToolInfo>) -> Vec<McpOffer> {
    let mut offers = Vec::new();
    for t in tools {
        let (enabled, policy) = config(set, &t.name);
        if !enabled {
            continue;
        }
        offers.push(McpOffer {
            server: set.mcp_server_name.clone(),
            def: ToolDef {
                name: model_tool_name(&set.mcp_server_name, &t.name),
                description: t.description,
                input_schema: t.input_schema,
            },
            tool: t.name,
            permission: match policy {
                PermissionPolicy::AlwaysAllow => Permission::Allow,
                PermissionPolicy::AlwaysAsk | PermissionPolicy::Auto => Permission::Ask,
            },
            auto: policy == PermissionPolicy::Auto,
        });
    }
    offers
}

/// The `session.error` saying `set`'s server could not be listed.
fn listing_failed(set: &McpToolset, kind: SessionErrorKind, why: &str) -> NewEvent {
    NewEvent::new(EventBody::SessionError {
        error: SessionErrorObject {
            kind,
            message: format!(
                "The tools of the MCP server {:?} are not available this turn: {why}",
                set.mcp_server_name
            ),
            // A later turn lists the server again.
            retry_status: RetryStatus::Retrying,
            mcp_server_name: Some(set.mcp_server_name.clone()),
        },
    })
}

/// Whether `tool` of toolset `set` is enabled, and its policy: its own config, else the default.
fn config(set: &McpToolset, tool: &str) -> (bool, PermissionPolicy) {
    match set.configs.iter().find(|c| c.name == tool) {
        Some(c) => (c.enabled, c.permission_policy),
        None => (
            set.default_config.enabled,
            set.default_config.permission_policy,
        ),
    }
}
