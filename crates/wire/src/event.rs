//! Session events: what the log stores and what `events.list` and the stream return.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::usage::{ModelUsage, Usage};
use crate::{ContentBlock, Timestamp};

/// One logged event as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub processed_at: Timestamp,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventBody {
    #[serde(rename = "user.message")]
    UserMessage { content: Vec<ContentBlock> },
    #[serde(rename = "user.interrupt")]
    UserInterrupt {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    #[serde(rename = "user.custom_tool_result")]
    UserCustomToolResult {
        custom_tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Vec<ContentBlock>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        /// Set on a worker thread's event shown on its session's log: the thread it belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    /// A worker's answer to a built-in call of a `self_hosted` environment's session.
    #[serde(rename = "user.tool_result")]
    UserToolResult {
        tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Vec<ContentBlock>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    #[serde(rename = "user.tool_confirmation")]
    UserToolConfirmation {
        tool_use_id: String,
        result: Confirmation,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deny_message: Option<String>,
        /// Set on a worker thread's event shown on its session's log: the thread it belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    #[serde(rename = "agent.message")]
    AgentMessage { content: Vec<ContentBlock> },
    #[serde(rename = "agent.thinking")]
    AgentThinking {},
    #[serde(rename = "agent.thread_context_compacted")]
    AgentThreadContextCompacted {},
    #[serde(rename = "agent.custom_tool_use")]
    AgentCustomToolUse {
        name: String,
        input: Map<String, Value>,
        /// Set on a worker thread's event shown on its session's log: the thread it belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    #[serde(rename = "agent.tool_use")]
    AgentToolUse {
        name: String,
        input: Map<String, Value>,
        evaluated_permission: Option<Permission>,
        /// Set on a worker thread's event shown on its session's log: the thread it belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    #[serde(rename = "agent.tool_result")]
    AgentToolResult {
        tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Vec<ContentBlock>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    /// A call of a tool an MCP server offers; agentd, the MCP client, makes it.
    #[serde(rename = "agent.mcp_tool_use")]
    AgentMcpToolUse {
        /// The tool's name on its server (the model calls it `mcp__<server>__<name>`).
        name: String,
        mcp_server_name: String,
        input: Map<String, Value>,
        evaluated_permission: Option<Permission>,
        /// Set on a worker thread's event shown on its session's log: the thread it belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_thread_id: Option<String>,
    },
    #[serde(rename = "agent.mcp_tool_result")]
    AgentMcpToolResult {
        mcp_tool_use_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Vec<ContentBlock>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    #[serde(rename = "user.define_outcome")]
    UserDefineOutcome {
        outcome_id: String,
        description: String,
        rubric: Rubric,
        max_iterations: Option<u32>,
    },
    #[serde(rename = "span.outcome_evaluation_start")]
    SpanOutcomeEvaluationStart { outcome_id: String, iteration: u32 },
    #[serde(rename = "span.outcome_evaluation_ongoing")]
    SpanOutcomeEvaluationOngoing { outcome_id: String, iteration: u32 },
    #[serde(rename = "span.outcome_evaluation_end")]
    SpanOutcomeEvaluationEnd {
        outcome_evaluation_start_id: String,
        outcome_id: String,
        iteration: u32,
        result: OutcomeResult,
        explanation: String,
        usage: ModelUsage,
    },
    /// Logged just before a built-in tool runs, so a restart can tell a call that never began
    /// (run it) from one cut short (report it interrupted, never run it again silently).
    /// Internal: never shown by the API.
    #[serde(rename = "internal.tool_started")]
    ToolStarted { tool_use_id: String },
    #[serde(rename = "session.status_running")]
    SessionStatusRunning {},
    #[serde(rename = "session.status_idle")]
    SessionStatusIdle {
        stop_reason: StopReason,
        #[serde(default)]
        stop_details: Option<Value>,
    },
    #[serde(rename = "session.status_rescheduled")]
    SessionStatusRescheduled {},
    #[serde(rename = "session.status_terminated")]
    SessionStatusTerminated {},
    #[serde(rename = "session.error")]
    SessionError { error: SessionErrorObject },
    #[serde(rename = "session.usage")]
    SessionUsage { usage: Usage },
    #[serde(rename = "session.updated")]
    SessionUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<std::collections::BTreeMap<String, String>>,
    },
    #[serde(rename = "session.thread_created")]
    SessionThreadCreated {
        session_thread_id: String,
        agent_name: String,
    },
    #[serde(rename = "session.thread_status_running")]
    SessionThreadStatusRunning {
        session_thread_id: String,
        agent_name: String,
    },
    #[serde(rename = "session.thread_status_idle")]
    SessionThreadStatusIdle {
        session_thread_id: String,
        agent_name: String,
        stop_reason: StopReason,
        #[serde(default)]
        stop_details: Option<Value>,
    },
    /// Written to the sender's log when one agent messages another.
    #[serde(rename = "agent.thread_message_sent")]
    AgentThreadMessageSent {
        to_session_thread_id: String,
        /// Absent when sent to the primary agent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_agent_name: Option<String>,
        content: Vec<ContentBlock>,
    },
    /// Written to the receiver's log: input for its next turn.
    #[serde(rename = "agent.thread_message_received")]
    AgentThreadMessageReceived {
        from_session_thread_id: String,
        /// Absent when it came from the primary agent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_agent_name: Option<String>,
        content: Vec<ContentBlock>,
    },
    #[serde(rename = "span.model_request_start")]
    SpanModelRequestStart {},
    #[serde(rename = "span.model_request_end")]
    SpanModelRequestEnd {
        model_request_start_id: String,
        is_error: Option<bool>,
        model_usage: ModelUsage,
    },
}

impl EventBody {
    /// The thread a copied event belongs to: set only on a worker's event shown on its
    /// session's log, never on an event in its own thread's log.
    pub fn copied_from(&self) -> Option<&str> {
        match self {
            EventBody::AgentToolUse {
                session_thread_id, ..
            }
            | EventBody::AgentMcpToolUse {
                session_thread_id, ..
            }
            | EventBody::AgentCustomToolUse {
                session_thread_id, ..
            }
            | EventBody::UserCustomToolResult {
                session_thread_id, ..
            }
            | EventBody::UserToolConfirmation {
                session_thread_id, ..
            }
            | EventBody::UserToolResult {
                session_thread_id, ..
            } => session_thread_id.as_deref(),
            _ => None,
        }
    }

    /// Mark this event as a copy from thread `tid`, or (None) as the thread's own.
    pub fn set_copied_from(&mut self, tid: Option<String>) {
        match self {
            EventBody::AgentToolUse {
                session_thread_id, ..
            }
            | EventBody::AgentMcpToolUse {
                session_thread_id, ..
            }
            | EventBody::AgentCustomToolUse {
                session_thread_id, ..
            }
            | EventBody::UserCustomToolResult {
                session_thread_id, ..
            }
            | EventBody::UserToolConfirmation {
                session_thread_id, ..
            }
            | EventBody::UserToolResult {
                session_thread_id, ..
            } => *session_thread_id = tid,
            _ => {}
        }
    }

    /// The wire `type` string, e.g. `"user.message"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::UserMessage { .. } => "user.message",
            EventBody::UserInterrupt { .. } => "user.interrupt",
            EventBody::UserCustomToolResult { .. } => "user.custom_tool_result",
            EventBody::UserToolConfirmation { .. } => "user.tool_confirmation",
            EventBody::UserToolResult { .. } => "user.tool_result",
            EventBody::AgentMessage { .. } => "agent.message",
            EventBody::AgentThinking {} => "agent.thinking",
            EventBody::AgentThreadContextCompacted {} => "agent.thread_context_compacted",
            EventBody::AgentCustomToolUse { .. } => "agent.custom_tool_use",
            EventBody::AgentToolUse { .. } => "agent.tool_use",
            EventBody::AgentToolResult { .. } => "agent.tool_result",
            EventBody::AgentMcpToolUse { .. } => "agent.mcp_tool_use",
            EventBody::AgentMcpToolResult { .. } => "agent.mcp_tool_result",
            EventBody::ToolStarted { .. } => INTERNAL_TOOL_STARTED,
            EventBody::UserDefineOutcome { .. } => "user.define_outcome",
            EventBody::SpanOutcomeEvaluationStart { .. } => "span.outcome_evaluation_start",
            EventBody::SpanOutcomeEvaluationOngoing { .. } => "span.outcome_evaluation_ongoing",
            EventBody::SpanOutcomeEvaluationEnd { .. } => "span.outcome_evaluation_end",
            EventBody::SessionStatusRunning {} => "session.status_running",
            EventBody::SessionStatusIdle { .. } => "session.status_idle",
            EventBody::SessionStatusRescheduled {} => "session.status_rescheduled",
            EventBody::SessionStatusTerminated {} => "session.status_terminated",
            EventBody::SessionError { .. } => "session.error",
            EventBody::SessionUsage { .. } => "session.usage",
            EventBody::SessionUpdated { .. } => "session.updated",
            EventBody::SessionThreadCreated { .. } => "session.thread_created",
            EventBody::SessionThreadStatusRunning { .. } => "session.thread_status_running",
            EventBody::SessionThreadStatusIdle { .. } => "session.thread_status_idle",
            EventBody::AgentThreadMessageSent { .. } => "agent.thread_message_sent",
            EventBody::AgentThreadMessageReceived { .. } => "agent.thread_message_received",
            EventBody::SpanModelRequestStart {} => "span.model_request_start",
            EventBody::SpanModelRequestEnd { .. } => "span.model_request_end",
        }
    }

    /// Harness bookkeeping the API never shows.
    pub fn is_internal(&self) -> bool {
        self.type_name().starts_with(INTERNAL_PREFIX)
    }

    /// Events a client may send (`POST /v1/sessions/{id}/events`).
    pub fn is_user_event(&self) -> bool {
        matches!(
            self,
            EventBody::UserMessage { .. }
                | EventBody::UserInterrupt { .. }
                | EventBody::UserCustomToolResult { .. }
                | EventBody::UserToolConfirmation { .. }
                | EventBody::UserToolResult { .. }
        )
    }
}

/// How an outcome is graded: criteria as text, or a file holding them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rubric {
    Text {
        content: String,
        /// Beyond the reference: exact checks run against the workspace before the model
        /// grader; any failure is a `needs_revision` naming it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        checks: Vec<Check>,
    },
    /// A text file uploaded with the Files API; its text is copied into the log when the
    /// outcome is defined, so deleting the file later changes nothing.
    File { file_id: String },
}

/// One exact check of an outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// A shell command, run in the session's sandbox, that must exit 0.
    Command { command: String },
    /// A file in the workspace (JSON, YAML, or CSV read as rows of objects) that must satisfy
    /// a JSON Schema.
    JsonSchema { file: String, schema: Value },
}

/// Default and largest number of evaluate-then-revise cycles of an outcome.
pub const OUTCOME_DEFAULT_ITERATIONS: u32 = 3;
pub const OUTCOME_MAX_ITERATIONS: u32 = 20;

/// Type names of internal events start with this.
pub const INTERNAL_PREFIX: &str = "internal.";
const INTERNAL_TOOL_STARTED: &str = "internal.tool_started";

/// What the permission policy decided for a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Allow,
    Ask,
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confirmation {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    RequiresAction {
        event_ids: Vec<String>,
    },
    RetriesExhausted,
    /// The model refused to answer (a safety classifier, say); the idle's `stop_details` says
    /// what the upstream said of it.
    Refusal,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionErrorObject {
    #[serde(rename = "type")]
    pub kind: SessionErrorKind,
    pub message: String,
    pub retry_status: RetryStatus,
    /// The server an `mcp_connection_failed_error` or `mcp_authentication_failed_error` is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_server_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionErrorKind {
    ModelOverloadedError,
    ModelRateLimitedError,
    ModelRequestFailedError,
    McpConnectionFailedError,
    McpAuthenticationFailedError,
    UnknownError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RetryStatus {
    Retrying,
    Exhausted,
    Terminal,
}

/// Where an outcome stands: `pending` before the agent begins, `running` while it works,
/// `evaluating` while the grader scores; a grading ends in one of the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeResult {
    Pending,
    Running,
    Evaluating,
    Satisfied,
    /// Not met yet: another revision follows.
    NeedsRevision,
    MaxIterationsReached,
    Failed,
    Interrupted,
}

impl OutcomeResult {
    /// Whether the outcome is settled: nothing more will be evaluated.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            OutcomeResult::Pending
                | OutcomeResult::Running
                | OutcomeResult::Evaluating
                | OutcomeResult::NeedsRevision
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeResult::Pending => "pending",
            OutcomeResult::Running => "running",
            OutcomeResult::Evaluating => "evaluating",
            OutcomeResult::Satisfied => "satisfied",
            OutcomeResult::NeedsRevision => "needs_revision",
            OutcomeResult::MaxIterationsReached => "max_iterations_reached",
            OutcomeResult::Failed => "failed",
            OutcomeResult::Interrupted => "interrupted",
        }
    }
}

/// `POST /v1/sessions/{id}/events` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendEvents {
    pub events: Vec<UserEvent>,
}

/// An event a client may send; anything else is refused at parse time.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub enum UserEvent {
    #[serde(rename = "user.message")]
    Message(MessageParams),
    #[serde(rename = "user.interrupt")]
    Interrupt(InterruptParams),
    #[serde(rename = "user.custom_tool_result")]
    CustomToolResult(CustomToolResultParams),
    #[serde(rename = "user.tool_confirmation")]
    ToolConfirmation(ToolConfirmationParams),
    #[serde(rename = "user.tool_result")]
    ToolResult(ToolResultParams),
    #[serde(rename = "user.define_outcome")]
    DefineOutcome(DefineOutcomeParams),
}

impl UserEvent {
    /// The `type` values a client may send.
    pub const TYPES: &[&str] = &[
        "user.message",
        "user.interrupt",
        "user.custom_tool_result",
        "user.tool_confirmation",
        "user.tool_result",
        "user.define_outcome",
    ];

    /// The thread this event is addressed to, when it names one.
    pub fn thread(&self) -> Option<&str> {
        match self {
            UserEvent::Interrupt(p) => p.session_thread_id.as_deref(),
            UserEvent::CustomToolResult(p) => p.session_thread_id.as_deref(),
            UserEvent::ToolConfirmation(p) => p.session_thread_id.as_deref(),
            UserEvent::ToolResult(p) => p.session_thread_id.as_deref(),
            UserEvent::Message(_) | UserEvent::DefineOutcome(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefineOutcomeParams {
    pub description: String,
    pub rubric: Rubric,
    #[serde(default)]
    pub max_iterations: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageParams {
    pub content: Vec<ContentBlock>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterruptParams {
    #[serde(default)]
    pub session_thread_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomToolResultParams {
    pub custom_tool_use_id: String,
    /// The thread whose call this answers; absent for the primary thread.
    #[serde(default)]
    pub session_thread_id: Option<String>,
    #[serde(default)]
    pub content: Option<Vec<ContentBlock>>,
    #[serde(default)]
    pub is_error: Option<bool>,
}

/// A worker's answer to a built-in call (`user.tool_result`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolResultParams {
    pub tool_use_id: String,
    #[serde(default)]
    pub session_thread_id: Option<String>,
    #[serde(default)]
    pub content: Option<Vec<ContentBlock>>,
    #[serde(default)]
    pub is_error: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfirmationParams {
    pub tool_use_id: String,
    /// The thread whose call this answers; absent for the primary thread.
    #[serde(default)]
    pub session_thread_id: Option<String>,
    pub result: Confirmation,
    #[serde(default)]
    pub deny_message: Option<String>,
}

impl From<UserEvent> for EventBody {
    fn from(e: UserEvent) -> Self {
        match e {
            UserEvent::Message(p) => EventBody::UserMessage { content: p.content },
            UserEvent::Interrupt(p) => EventBody::UserInterrupt {
                session_thread_id: p.session_thread_id,
            },
            UserEvent::CustomToolResult(p) => EventBody::UserCustomToolResult {
                custom_tool_use_id: p.custom_tool_use_id,
                content: p.content,
                is_error: p.is_error,
                session_thread_id: p.session_thread_id,
            },
            UserEvent::ToolConfirmation(p) => EventBody::UserToolConfirmation {
                tool_use_id: p.tool_use_id,
                result: p.result,
                deny_message: p.deny_message,
                session_thread_id: p.session_thread_id,
            },
            UserEvent::ToolResult(p) => EventBody::UserToolResult {
                tool_use_id: p.tool_use_id,
                content: p.content,
                is_error: p.is_error,
                session_thread_id: p.session_thread_id,
            },
            UserEvent::DefineOutcome(p) => EventBody::UserDefineOutcome {
                outcome_id: crate::ids::new(crate::ids::Kind::Outcome),
                description: p.description,
                rubric: p.rubric,
                max_iterations: p.max_iterations,
            },
        }
    }
}

/// What the stream sends besides logged events: previews of an event still being produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Preview {
    EventStart { event: PreviewRef },
    EventDelta { event_id: String, delta: Delta },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewRef {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    #[serde(rename = "type")]
    pub kind: DeltaTag,
    pub content: ContentBlock,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaTag {
    ContentDelta,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_their_type_tag() {
        let e = Event {
            id: "sevt_1".into(),
            processed_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            body: EventBody::SessionStatusIdle {
                stop_reason: StopReason::RequiresAction {
                    event_ids: vec!["sevt_0".into()],
                },
                stop_details: None,
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "session.status_idle");
        assert_eq!(v["stop_reason"]["type"], "requires_action");
        assert_eq!(v["stop_reason"]["event_ids"][0], "sevt_0");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn only_user_events_can_be_sent() {
        let ok: Result<SendEvents, _> = serde_json::from_str(
            r#"{"events":[{"type":"user.message","content":[{"type":"text","text":"hi"}]}]}"#,
        );
        assert!(ok.is_ok());
        let bad: Result<SendEvents, _> =
            serde_json::from_str(r#"{"events":[{"type":"agent.message","content":[]}]}"#);
        assert!(bad.is_err());
    }
}
