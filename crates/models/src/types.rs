//! Provider-neutral request and response types.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use agentd_wire::usage::ModelUsage as Usage;

/// How every outcome grader's system prompt begins. Models are told what a request is for by
/// [`Request::purpose`]; this is for tests that see only the body an upstream receives.
pub const GRADER_SYSTEM_PREFIX: &str = "You are the grader of an agent's work.";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Request {
    /// The upstream model id, routing prefix removed (`scripted/x` → `x`).
    pub model: String,
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolDef>,
    pub max_tokens: u32,
    pub purpose: Purpose,
}

/// What the harness asks a request for. Upstream providers send the same thing whatever the
/// purpose; it exists so stand-in models (the scripted one) can answer each kind in kind
/// without reading the harness's prompt text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// The agent's own next step.
    #[default]
    Turn,
    /// An outcome grader judging the agent's work, at this evaluation iteration (from 0).
    Grading { iteration: u32 },
    /// A summary of older turns that will replace them in the context.
    Compaction,
    /// A judgement of one tool call under the `auto` permission policy: ALLOW or DENY.
    PermissionCheck,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Block>,
}

/// Content blocks in the Anthropic shape, which is the richest; other providers map from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    Image {
        source: Value,
    },
    Document {
        source: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<String>,
    },
    Thinking {
        thinking: String,
        signature: String,
    },
    RedactedThinking {
        data: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: Vec<Block>,
        #[serde(default)]
        is_error: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    ToolUse,
    MaxTokens,
    StopSequence,
    Refusal,
    PauseTurn,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub content: Vec<Block>,
    pub stop_reason: StopReason,
    pub usage: Usage,
}

impl Response {
    /// The text blocks of the answer, joined: what a grading or a summary said.
    pub fn text(&self) -> String {
        text_of(&self.content)
    }
}

impl Message {
    /// The message's text blocks, joined.
    pub fn text(&self) -> String {
        text_of(&self.content)
    }
}

fn text_of(content: &[Block]) -> String {
    content
        .iter()
        .filter_map(|b| match b {
            Block::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// What a provider reports while it streams, for live previews. Best effort: the final
/// `Response` is the truth.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// The first byte of the upstream response arrived.
    Started,
    /// Block `index` started as text.
    TextStart {
        index: u32,
    },
    Text {
        index: u32,
        text: String,
    },
    /// Block `index` started as (possibly redacted) thinking.
    ThinkingStart {
        index: u32,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("upstream rate limited the request: {message}")]
    RateLimited {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("upstream is overloaded: {message}")]
    Overloaded {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("upstream failed with HTTP {status}: {message}")]
    Server { status: u16, message: String },
    #[error("upstream refused the request with HTTP {status}: {message}")]
    Rejected { status: u16, message: String },
    #[error("could not reach upstream: {0}")]
    Transport(String),
    #[error("upstream sent a malformed response: {0}")]
    Protocol(String),
}

impl Error {
    /// Worth trying again after a pause: rate limits, overload, 5xx and broken connections.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. }
                | Error::Overloaded { .. }
                | Error::Server { .. }
                | Error::Transport(_)
                | Error::Protocol(_)
        )
    }

    /// The pause upstream asked for, if any (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } | Error::Overloaded { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Models served in-process from files on this machine, reached as `local/<name>`.
pub trait LocalModels: Model {
    /// Whether `local/<name>` can be served; the error says how to make it so.
    fn check(&self, name: &str) -> std::result::Result<(), String>;
}

/// One model behind one provider.
#[async_trait]
pub trait Model: Send + Sync + 'static {
    /// Run one request to completion, reporting deltas as they stream.
    async fn complete(
        &self,
        request: &Request,
        on_delta: &mut (dyn FnMut(Delta) + Send),
    ) -> Result<Response>;
}
