//! The names of the tools agentd itself answers, parsed once from the model's (or the log's)
//! string so the harness matches on a variant instead of comparing strings.

use std::fmt;

/// A tool call's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ToolName {
    Bash,
    Read,
    Write,
    Edit,
    Glob,
    Grep,
    WebFetch,
    WebSearch,
    /// A coordinator's tool that starts a worker thread.
    StartThread,
    /// A coordinator's tool that messages a worker thread it started.
    SendToThread,
    /// A tool of an MCP server of the agent, which agentd calls as the MCP client.
    Mcp {
        server: String,
        tool: String,
    },
    /// Any other name: a custom tool's, or one the model made up.
    Other(String),
}

impl ToolName {
    pub const START_THREAD: &str = "start_thread";
    pub const SEND_TO_THREAD: &str = "send_to_thread";

    pub fn parse(name: &str) -> ToolName {
        match name {
            "bash" => ToolName::Bash,
            "read" => ToolName::Read,
            "write" => ToolName::Write,
            "edit" => ToolName::Edit,
            "glob" => ToolName::Glob,
            "grep" => ToolName::Grep,
            "web_fetch" => ToolName::WebFetch,
            "web_search" => ToolName::WebSearch,
            ToolName::START_THREAD => ToolName::StartThread,
            ToolName::SEND_TO_THREAD => ToolName::SendToThread,
            other => ToolName::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            ToolName::Bash => "bash",
            ToolName::Read => "read",
            ToolName::Write => "write",
            ToolName::Edit => "edit",
            ToolName::Glob => "glob",
            ToolName::Grep => "grep",
            ToolName::WebFetch => "web_fetch",
            ToolName::WebSearch => "web_search",
            ToolName::StartThread => ToolName::START_THREAD,
            ToolName::SendToThread => ToolName::SEND_TO_THREAD,
            ToolName::Mcp { tool, .. } => tool,
            ToolName::Other(name) => name,
        }
    }

    /// Runs in the sandbox (as opposed to on the host, or not at all).
    pub fn in_sandbox(&self) -> bool {
        matches!(
            self,
            ToolName::Bash
                | ToolName::Read
                | ToolName::Write
                | ToolName::Edit
                | ToolName::Glob
                | ToolName::Grep
        )
    }

    /// A coordinator's thread tool, whose effect the harness logs instead of running it.
    pub fn is_thread_tool(&self) -> bool {
        matches!(self, ToolName::StartThread | ToolName::SendToThread)
    }
}

impl From<&str> for ToolName {
    fn from(name: &str) -> Self {
        ToolName::parse(name)
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ToolName;
    use agentd_hands::tools::{HOST_TOOLS, SANDBOX_TOOLS};

    #[test]
    fn every_built_in_has_a_variant_and_round_trips() {
        for name in SANDBOX_TOOLS.iter().chain(HOST_TOOLS) {
            let parsed = ToolName::parse(name);
            assert!(!matches!(parsed, ToolName::Other(_)), "{name}");
            assert_eq!(parsed.as_str(), *name);
            assert_eq!(parsed.in_sandbox(), SANDBOX_TOOLS.contains(name));
        }
        for name in [ToolName::START_THREAD, ToolName::SEND_TO_THREAD] {
            assert!(ToolName::parse(name).is_thread_tool());
            assert_eq!(ToolName::parse(name).as_str(), name);
        }
        assert_eq!(
            ToolName::parse("my_tool"),
            ToolName::Other("my_tool".into())
        );
    }

    /// The API refuses a toolset config naming a tool outside the wire's list, so the list
    /// must be exactly the tools the harness runs.
    #[test]
    fn the_wire_names_the_tools_the_hands_run() {
        let mut ours: Vec<&str> = SANDBOX_TOOLS.iter().chain(HOST_TOOLS).copied().collect();
        let mut wire = agentd_wire::agent::AGENT_TOOLSET_20260401_TOOLS.to_vec();
        ours.sort_unstable();
        wire.sort_unstable();
        assert_eq!(ours, wire);
    }
}
