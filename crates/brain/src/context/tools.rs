//! The built-in and MCP calls the model made that the harness still has to answer, and where each
//! stands: allowed, waiting for the user's confirmation, denied, or begun.

use agentd_wire::event::{Confirmation, Permission};

use super::{ToolAction, ToolWork};
use crate::tool_name::ToolName;

/// Where a built-in call stands.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Allowed,
    AwaitingConfirmation,
    Denied(String),
    Started,
}

/// Open built-in calls, in call order.
#[derive(Default)]
pub(super) struct BuiltinCalls {
    open: Vec<Open>,
    /// A call ran in this log's sandbox before: its workspace has been made somewhere.
    pub(super) used_sandbox: bool,
}

struct Open {
    /// The `agent.tool_use` event id.
    id: String,
    name: ToolName,
    input: serde_json::Value,
    call: Call,
}

impl BuiltinCalls {
    /// The model called a built-in tool; `cut` when the request it came from was interrupted.
    pub(super) fn called(
        &mut self,
        id: &str,
        name: &str,
        input: &serde_json::Map<String, serde_json::Value>,
        permission: Option<Permission>,
        cut: bool,
    ) {
        self.open_call(id, ToolName::parse(name), input, permission, cut);
    }

    /// The model called a tool of MCP server `server`, by its `tool` name there.
    pub(super) fn called_mcp(
        &mut self,
        id: &str,
        server: &str,
        tool: &str,
        input: &serde_json::Map<String, serde_json::Value>,
        permission: Option<Permission>,
        cut: bool,
    ) {
        let name = ToolName::Mcp {
            server: server.to_owned(),
            tool: tool.to_owned(),
        };
        self.open_call(id, name, input, permission, cut);
    }

    fn open_call(
        &mut self,
        id: &str,
        name: ToolName,
        input: &serde_json::Map<String, serde_json::Value>,
        permission: Option<Permission>,
        cut: bool,
    ) {
        let call = match permission {
            _ if cut => Call::Denied("The user interrupted before this call ran.".into()),
            Some(Permission::Ask) => Call::AwaitingConfirmation,
            Some(Permission::Deny) => Call::Denied(format!(
                "The tool {:?} is not enabled for this agent, or does not exist.",
                name.as_str()
            )),
            Some(Permission::Allow) | None => Call::Allowed,
        };
        self.open.push(Open {
            id: id.to_owned(),
            name,
            input: serde_json::Value::Object(input.clone()),
            call,
        });
    }

    /// The user's answer to a call that asked for confirmation; any other call ignores it.
    pub(super) fn confirmed(
        &mut self,
        id: &str,
        result: &Confirmation,
        deny_message: Option<&str>,
    ) {
        if let Some(open) = self.open.iter_mut().find(|c| c.id == id)
            && open.call == Call::AwaitingConfirmation
        {
            open.call = match result {
                Confirmation::Allow => Call::Allowed,
                Confirmation::Deny => Call::Denied(match deny_message {
                    Some(m) => format!("The user denied this call: {m}"),
                    None => "The user denied this call.".into(),
                }),
            };
        }
    }

    pub(super) fn started(&mut self, id: &str) {
        if let Some(open) = self.open.iter_mut().find(|c| c.id == id) {
            open.call = Call::Started;
            self.used_sandbox |= open.name.in_sandbox();
        }
    }

    pub(super) fn answered(&mut self, id: &str) {
        self.open.retain(|c| c.id != id);
    }

    /// The conversation moved on (a user message, an interrupt): every open call was closed.
    pub(super) fn clear(&mut self) {
        self.open.clear();
    }

    /// The calls the harness can answer now, in call order; those waiting for the user are not.
    pub(super) fn work(&self) -> Vec<ToolWork> {
        self.open
            .iter()
            .filter_map(|o| {
                let action = match &o.call {
                    Call::Allowed => ToolAction::Run,
                    Call::Denied(why) => ToolAction::Deny(why.clone()),
                    Call::Started => ToolAction::Interrupted,
                    Call::AwaitingConfirmation => return None,
                };
                Some(ToolWork {
                    id: o.id.clone(),
                    name: o.name.clone(),
                    input: o.input.clone(),
                    action,
                })
            })
            .collect()
    }
}
