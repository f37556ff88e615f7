//! agentd as an MCP client. Owns connecting to an agent's MCP servers (streamable HTTP, through
//! `rmcp`, or the older HTTP+SSE transport where a server offers only that), listing and calling their tools, and the limits on both: a timeout per call, a cap
//! on a result's size, the environment's egress policy checked before any connection, and a
//! credential asked of [`McpAuth`] for every request. It touches no storage: connections and
//! tool lists live in memory per session, and after a restart they are simply made again.

mod auth;
mod client;
mod content;
mod egress;
mod error;
mod http;
mod sse;

pub use auth::{AuthError, McpAuth, NoAuth, Secret};
pub use client::{CallResult, Limits, Mcp, Server, ToolInfo};
pub use egress::{policy_for, refusal};
pub use error::Error;

/// The name a tool of MCP server `server` is offered to the model under (`mcp__<server>__<tool>`,
/// as Claude's agent harnesses name them), with any character a model tool name cannot hold
/// replaced by `_`.
pub fn model_tool_name(server: &str, tool: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut name = format!("mcp__{}__{}", clean(server), clean(tool));
    name.truncate(128);
    name
}

#[cfg(test)]
mod tests;
