//! The built-in toolset `agent_toolset_20260401`: names, descriptions, input schemas, and the
//! typed inputs the helper parses. A bad input is an error output, never a crash.

use serde::Deserialize;
use serde_json::{Value, json};

/// Tools the sandbox runs.
pub const SANDBOX_TOOLS: &[&str] = &["bash", "read", "write", "edit", "glob", "grep"];

/// Tools agentd runs outside the sandbox: `web_fetch` under the environment's network policy,
/// `web_search` through the operator's search backend (offered only when one is configured).
pub const HOST_TOOLS: &[&str] = &["web_fetch", "web_search"];

/// Text `web_fetch` returns at most.
pub const WEB_FETCH_LIMIT: usize = 100 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebFetchInput {
    pub url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSearchInput {
    pub query: String,
}

/// Bash output kept per call; the middle of anything longer is cut, with a note.
pub const BASH_OUTPUT_LIMIT: usize = 100 * 1024;
pub const BASH_DEFAULT_TIMEOUT_MS: u64 = 120_000;
pub const BASH_MAX_TIMEOUT_MS: u64 = 600_000;
/// Largest file `read` returns whole and `edit` loads.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;
pub const GREP_OUTPUT_LIMIT: usize = 100 * 1024;
pub const GREP_MAX_LINE: usize = 2000;
pub const GLOB_RESULT_LIMIT: usize = 200;
pub const WALK_MAX_ENTRIES: usize = 50_000;

/// Not a model's tool: an outcome's check command, run in a fresh shell (`helper::check`).
pub const CHECK: &str = "check";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckInput {
    pub command: String,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BashInput {
    pub command: Option<String>,
    pub restart: Option<bool>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadInput {
    pub file_path: String,
    pub view_range: Option<Vec<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteInput {
    pub file_path: String,
    pub content: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditInput {
    pub file_path: String,
    pub old_string: String,
    pub new_string: String,
    pub replace_all: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobInput {
    pub pattern: String,
    pub path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrepInput {
    pub pattern: String,
    pub path: Option<String>,
}

/// Description and JSON schema of a built-in tool, as the model is shown it.
pub fn definition(name: &str) -> Option<(&'static str, Value)> {
    Some(match name {
        "bash" => (
            "Run a command in a persistent bash shell in the sandbox. The working directory, \
             exported variables and background processes persist between calls. Output over \
             100 KiB is cut in the middle. Set restart to get a fresh shell.",
            json!({"type": "object", "properties": {
                "command": {"type": "string", "description": "The command to run."},
                "restart": {"type": "boolean", "description": "Restart the shell first."},
                "timeout_ms": {"type": "integer", "description": "Timeout in milliseconds (default 120000, max 600000)."}
            }}),
        ),
        "read" => (
            "Read a text file. Paths are relative to /workspace unless absolute. Files over \
             256 KiB need a view_range of [first_line, last_line].",
            json!({"type": "object", "properties": {
                "file_path": {"type": "string"},
                "view_range": {"type": "array", "items": {"type": "integer"}, "description": "[start_line, end_line], 1-based; end -1 reads to the end."}
            }, "required": ["file_path"]}),
        ),
        "write" => (
            "Write a file, creating parent directories as needed. Replaces an existing file.",
            json!({"type": "object", "properties": {
                "file_path": {"type": "string"},
                "content": {"type": "string"}
            }, "required": ["file_path", "content"]}),
        ),
        "edit" => (
            "Replace old_string with new_string in a file. old_string must occur exactly once \
             unless replace_all is true.",
            json!({"type": "object", "properties": {
                "file_path": {"type": "string"},
                "old_string": {"type": "string"},
                "new_string": {"type": "string"},
                "replace_all": {"type": "boolean"}
            }, "required": ["file_path", "old_string", "new_string"]}),
        ),
        "glob" => (
            "List files matching a glob pattern such as **/*.rs, newest first (at most 200).",
            json!({"type": "object", "properties": {
                "pattern": {"type": "string"},
                "path": {"type": "string", "description": "Directory to search (default /workspace)."}
            }, "required": ["pattern"]}),
        ),
        "grep" => (
            "Search file contents with a regular expression; prints path:line:text.",
            json!({"type": "object", "properties": {
                "pattern": {"type": "string"},
                "path": {"type": "string", "description": "File or directory to search (default /workspace)."}
            }, "required": ["pattern"]}),
        ),
        "web_fetch" => (
            "Fetch a URL (http or https) and return its text; HTML is reduced to its visible \
             text. Only hosts the environment's network policy allows can be reached.",
            json!({"type": "object", "properties": {
                "url": {"type": "string", "description": "The URL to fetch."}
            }, "required": ["url"]}),
        ),
        "web_search" => (
            "Search the web; returns titles, URLs and snippets of the top results.",
            json!({"type": "object", "properties": {
                "query": {"type": "string", "description": "What to search for."}
            }, "required": ["query"]}),
        ),
        _ => return None,
    })
}

/// Parse a tool input, or say what is wrong with it in words the model can act on.
pub fn parse<T: serde::de::DeserializeOwned>(tool: &str, input: &Value) -> Result<T, String> {
    serde_json::from_value(input.clone()).map_err(|e| format!("{tool}: invalid input: {e}"))
}
