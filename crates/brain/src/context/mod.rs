//! The fold from a log to what the harness needs: the model's messages and what to do next.
//! Pure: the same events always give the same answer.
//!
//! `fold` hands each event to the part of the state that owns it: the message `builder`, the
//! open built-in calls (`tools`), the `outcome` loop and the `threads`; what a request in
//! flight holds back, and the usage, stay here.

mod builder;
mod outcome;
mod threads;
mod tools;

use agentd_models::{Block, Message, Role};
use agentd_session::{Private, StoredEvent};
use agentd_wire::event::RetryStatus;
use agentd_wire::usage::ModelUsage;
use agentd_wire::{ContentBlock, EventBody, SessionStatus, StopReason, Usage};

use builder::{Builder, to_block};
use threads::Threads;
use tools::BuiltinCalls;

pub use crate::tool_name::ToolName;

/// What the log says should happen next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Call the model. `open_span` is a request whose start was logged but whose end was
    /// not (the process died mid-request); it is made again under the same span.
    CallModel { open_span: Option<String> },
    /// Answer built-in tool calls, in order.
    RunTools(Vec<ToolWork>),
    /// Grade the agent's work against the session's outcome.
    Evaluate(Outcome),
    /// Nothing to do until the user acts; the session rests with this stop reason.
    Rest(StopReason),
    /// The turn is over but threads this one started are still at work: stay running until
    /// their replies arrive.
    Wait,
}

/// A thread this one started, as its log tells.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    pub id: String,
    pub agent_name: String,
    /// Sent work it has not answered yet.
    pub busy: bool,
}

/// What a thread has to say for its work since its last reply, for whoever sent it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    /// The agent's messages since its last reply.
    pub text: String,
    /// Why the work failed, if it did: a model error the retries did not get past.
    pub failure: Option<String>,
    pub interrupted: bool,
}

pub use crate::outcomes::Outcome;

/// A built-in tool call the harness must answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolWork {
    /// The `agent.tool_use` event id.
    pub id: String,
    pub name: ToolName,
    pub input: serde_json::Value,
    pub action: ToolAction,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolAction {
    /// Allowed and not yet begun: run it.
    Run,
    /// Refused by policy or by the user: answer with this error.
    Deny(String),
    /// Begun before the process died, with no result logged: it may have partly run, so it is
    /// reported as interrupted, never silently run again.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    pub messages: Vec<Message>,
    pub next: Next,
    pub status: SessionStatus,
    pub usage: Usage,
    /// The stop reason of the last `session.status_idle`, if the session ever rested.
    pub last_rest: Option<StopReason>,
    /// The latest outcome defined, if any.
    pub outcome: Option<Outcome>,
    /// Prompt tokens of the last model request since the last compaction.
    pub prompt_tokens: u64,
    /// The log position each message of `messages` starts at.
    pub message_starts: Vec<u64>,
    /// Position of the last event folded.
    pub tail: u64,
    /// Threads this one started.
    pub children: Vec<Child>,
    /// This thread's answer to the work it was given since its last reply.
    pub reply: Reply,
    /// Work from the coordinator that this (worker) thread has not answered yet.
    pub owes_reply: bool,
    /// Input (a user message, a tool result) was logged after the open request started: the
    /// request is made again without it, so its response must not rest the log.
    pub input_since_request: bool,
    /// A built-in call of this log ran in a sandbox before, so its session's workspace was
    /// made: finding none now means it was lost (another host, no shared workspace root).
    pub used_sandbox: bool,
}

impl Fold {
    pub fn busy_children(&self) -> impl Iterator<Item = &Child> {
        self.children.iter().filter(|c| c.busy)
    }
}

pub fn fold(events: &[StoredEvent]) -> Fold {
    let mut s = State::new();
    for e in events {
        s.apply(e);
    }
    s.finish()
}

const USER_SPOKE: &str = "The user sent a new message before this tool returned.";
const USER_INTERRUPTED: &str = "The user interrupted before this tool returned.";

/// Everything the fold tracks while it reads the log.
struct State {
    b: Builder,
    calls: BuiltinCalls,
    threads: Threads,
    /// The latest outcome defined, if any.
    outcome: Option<Outcome>,
    /// Input arrived that the model has not answered.
    needs_model: bool,
    /// A request whose start was logged and whose end was not.
    open_span: Option<String>,
    /// User messages that arrived while a request was in flight, for after its response.
    held: Vec<Vec<Block>>,
    /// The request in flight was interrupted: calls in its response are void.
    cut: bool,
    /// The last model request failed for good after its retries.
    exhausted: bool,
    /// The last model response was a refusal; the rest after it says so.
    refused: bool,
    status: SessionStatus,
    usage: Usage,
    last_rest: Option<StopReason>,
    /// Prompt size of the last model request, the measure of how full the context is.
    prompt_tokens: u64,
    tail: u64,
}

impl State {
    fn new() -> Self {
        State {
            b: Builder::default(),
            calls: BuiltinCalls::default(),
            threads: Threads::default(),
            outcome: None,
            needs_model: false,
            open_span: None,
            held: Vec::new(),
            cut: false,
            exhausted: false,
            refused: false,
            status: SessionStatus::Idle,
            usage: Usage::default(),
            last_rest: None,
            prompt_tokens: 0,
            tail: 0,
        }
    }

    fn apply(&mut self, e: &StoredEvent) {
        self.tail = e.seq;
        self.b.at = e.seq;
        if e.event.body.copied_from().is_some() {
            // A worker's call shown here for the user; its own log has it.
            return;
        }
        if let Some(s) = agentd_session::status_after(&e.event.body) {
            self.status = s;
        }
        let id = &e.event.id;
        match &e.event.body {
            EventBody::UserMessage { content } => self.user_message(content),
            EventBody::UserInterrupt { .. } => self.interrupt(),
            EventBody::AgentThreadMessageReceived { .. }
            | EventBody::SessionThreadCreated { .. }
            | EventBody::AgentThreadMessageSent { .. }
            | EventBody::SessionThreadStatusRunning { .. }
            | EventBody::SessionThreadStatusIdle { .. } => self.thread_event(&e.event.body),
            EventBody::UserDefineOutcome { .. }
            | EventBody::SpanOutcomeEvaluationStart { .. }
            | EventBody::SpanOutcomeEvaluationEnd { .. } => self.outcome_event(e),
            EventBody::AgentToolUse { .. }
            | EventBody::AgentMcpToolUse { .. }
            | EventBody::AgentMcpToolResult { .. }
            | EventBody::UserToolConfirmation { .. }
            | EventBody::ToolStarted { .. }
            | EventBody::AgentToolResult { .. }
            | EventBody::AgentCustomToolUse { .. }
            | EventBody::UserCustomToolResult { .. }
            | EventBody::UserToolResult { .. } => self.tool_event(e),
            EventBody::SpanModelRequestStart {} => self.request_started(id),
            EventBody::SpanModelRequestEnd { model_usage, .. } => {
                self.refused = matches!(
                    e.private,
                    Some(agentd_session::Private::Cost { refused: true, .. })
                );
                self.request_ended(model_usage);
            }
            EventBody::AgentThreadContextCompacted {} => self.compacted(e.private.as_ref()),
            EventBody::SessionError { error } => {
                self.exhausted = error.retry_status == RetryStatus::Exhausted;
                if error.retry_status != RetryStatus::Retrying {
                    self.threads.reply.failure = Some(error.message.clone());
                }
            }
            EventBody::AgentThinking {} => self.b.thinking(e.private.as_ref()),
            EventBody::AgentMessage { content } => self.agent_message(content),
            EventBody::SessionStatusIdle { stop_reason, .. } => {
                self.last_rest = Some(stop_reason.clone());
            }
            EventBody::SpanOutcomeEvaluationOngoing { .. }
            | EventBody::SessionStatusRunning {}
            | EventBody::SessionStatusRescheduled {}
            | EventBody::SessionStatusTerminated {}
            | EventBody::SessionUsage { .. }
            | EventBody::SessionUpdated { .. } => {}
        }
    }

    /// Events between threads: `threads` owns them.
    fn thread_event(&mut self, body: &EventBody) {
        match body {
            EventBody::AgentThreadMessageReceived {
                from_session_thread_id,
                from_agent_name,
                content,
            } => {
                self.threads.received(
                    &mut self.b,
                    self.open_span.is_some(),
                    from_session_thread_id,
                    from_agent_name.as_deref(),
                    content,
                );
                self.exhausted = false;
            }
            EventBody::SessionThreadCreated {
                session_thread_id,
                agent_name,
            } => self.threads.created(session_thread_id, agent_name),
            EventBody::AgentThreadMessageSent {
                to_session_thread_id,
                to_agent_name,
                ..
            } => self
                .threads
                .sent(to_session_thread_id, to_agent_name.as_deref()),
            EventBody::SessionThreadStatusRunning { .. }
            | EventBody::SessionThreadStatusIdle { .. } => {}
            _ => {}
        }
    }

    /// Events of the outcome loop: `outcome` owns them.
    fn outcome_event(&mut self, e: &StoredEvent) {
        let id = &e.event.id;
        match &e.event.body {
            EventBody::UserDefineOutcome {
                outcome_id,
                description,
                rubric,
                max_iterations,
            } => {
                let private = e.private.as_ref();
                let o = outcome::define(
                    &mut self.b,
                    outcome_id,
                    description,
                    rubric,
                    private,
                    *max_iterations,
                );
                self.outcome = Some(o);
                self.input();
            }
            EventBody::SpanOutcomeEvaluationStart { .. } => {
                if let Some(o) = self.outcome.as_mut() {
                    o.open_eval = Some(id.clone());
                }
            }
            EventBody::SpanOutcomeEvaluationEnd {
                iteration,
                result,
                explanation,
                usage: grading,
                ..
            } => {
                self.usage.add(grading);
                if let Some(o) = self.outcome.as_mut()
                    && o.evaluated(&mut self.b, *iteration, result, explanation)
                {
                    self.needs_model = true;
                }
            }
            _ => {}
        }
    }

    /// Tool calls and their answers: `tools` owns the built-in ones, the builder every call's
    /// place in the conversation.
    fn tool_event(&mut self, e: &StoredEvent) {
        let id = &e.event.id;
        match &e.event.body {
            EventBody::AgentToolUse {
                name,
                input,
                evaluated_permission,
                ..
            } => {
                self.b.open_tool(id, name, input);
                self.calls
                    .called(id, name, input, *evaluated_permission, self.cut);
            }
            EventBody::AgentMcpToolUse {
                name,
                mcp_server_name,
                input,
                evaluated_permission,
                ..
            } => {
                // The model knows the call by the name it was offered under.
                let offered = agentd_mcp::model_tool_name(mcp_server_name, name);
                self.b.open_tool(id, &offered, input);
                self.calls.called_mcp(
                    id,
                    mcp_server_name,
                    name,
                    input,
                    *evaluated_permission,
                    self.cut,
                );
            }
            EventBody::AgentMcpToolResult {
                mcp_tool_use_id,
                content,
                is_error,
            } => {
                self.calls.answered(mcp_tool_use_id);
                self.answer(mcp_tool_use_id, content.as_deref(), *is_error);
            }
            EventBody::UserToolConfirmation {
                tool_use_id,
                result,
                deny_message,
                ..
            } => self
                .calls
                .confirmed(tool_use_id, result, deny_message.as_deref()),
            EventBody::ToolStarted { tool_use_id } => self.calls.started(tool_use_id),
            EventBody::AgentToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                self.calls.answered(tool_use_id);
                self.answer(tool_use_id, content.as_deref(), *is_error);
            }
            EventBody::AgentCustomToolUse { name, input, .. } => {
                self.b.open_tool(id, name, input);
                if self.cut {
                    let why = [ContentBlock::text(
                        "The user interrupted before this call ran.",
                    )];
                    self.b.close_tool(id, &why, true);
                }
            }
            EventBody::UserCustomToolResult {
                custom_tool_use_id,
                content,
                is_error,
                ..
            } => self.answer(custom_tool_use_id, content.as_deref(), *is_error),
            // A worker of a self_hosted environment ran the call.
            EventBody::UserToolResult {
                tool_use_id,
                content,
                is_error,
                ..
            } => {
                self.calls.answered(tool_use_id);
                self.answer(tool_use_id, content.as_deref(), *is_error);
            }
            _ => {}
        }
    }

    /// New input for the model, which also gives a failed turn another chance.
    fn input(&mut self) {
        self.needs_model = true;
        self.exhausted = false;
    }

    fn user_message(&mut self, content: &[ContentBlock]) {
        let blocks: Vec<Block> = content.iter().map(to_block).collect();
        if self.open_span.is_some() {
            // The request in flight was made without it: it joins the context after that
            // request's response, so the next request ends with the user's turn.
            self.held.push(blocks);
        } else {
            self.close_calls(USER_SPOKE);
            self.b.flush_held();
            self.b.push(Role::User, blocks);
        }
        self.input();
        self.threads.user_message();
    }

    fn interrupt(&mut self) {
        // Tool calls of a response that lands after the interrupt never run.
        self.cut = self.open_span.is_some();
        self.threads.interrupted();
        self.close_calls(USER_INTERRUPTED);
        self.needs_model = false;
        if let Some(o) = self.outcome.as_mut() {
            o.interrupted();
        }
    }

    /// A tool result; the last open call's lets the conversation go on.
    fn answer(&mut self, id: &str, content: Option<&[ContentBlock]>, is_error: Option<bool>) {
        if self.b.answer(
            id,
            content.unwrap_or_default(),
            is_error.unwrap_or(false),
            self.open_span.is_some(),
        ) {
            self.input();
        }
    }

    /// A request consumes every input logged before it.
    fn request_started(&mut self, span: &str) {
        self.open_span = Some(span.to_owned());
        self.needs_model = false;
        self.threads.replies_pending = !self.b.held.is_empty();
        self.cut = false;
    }

    /// The request in flight ended: the user messages it was made without join the context,
    /// and its prompt's size says how full the context is.
    fn request_ended(&mut self, spent: &ModelUsage) {
        self.open_span = None;
        for blocks in std::mem::take(&mut self.held) {
            self.close_calls(USER_SPOKE);
            self.b.push(Role::User, blocks);
        }
        if self.b.open_tools.is_empty() {
            self.b.flush_held();
        }
        self.usage.add(spent);
        self.prompt_tokens =
            spent.input_tokens + spent.cache_read_input_tokens + spent.cache_creation_input_tokens;
    }

    fn compacted(&mut self, private: Option<&Private>) {
        if let Some(Private::Compaction {
            summary,
            upto,
            usage: spent,
            ..
        }) = private
        {
            self.usage.add(spent);
            self.b.compact(summary, *upto);
            self.prompt_tokens = 0;
        }
    }

    fn agent_message(&mut self, content: &[ContentBlock]) {
        if let Some(o) = self.outcome.as_mut() {
            o.answered(content);
        }
        self.threads.agent_message(content);
        self.b
            .push(Role::Assistant, content.iter().map(to_block).collect());
    }

    /// Every open call gets an error result saying why, and none is left to run.
    fn close_calls(&mut self, why: &str) {
        self.b.close_open_tools(why);
        self.calls.clear();
    }

    fn next(&self) -> Next {
        let work = self.calls.work();
        let busy = self.threads.busy();
        let open_tools = &self.b.open_tools;
        let t = &self.threads;
        if self.status == SessionStatus::Terminated {
            Next::Rest(StopReason::EndTurn)
        } else if self.open_span.is_some() || self.needs_model {
            Next::CallModel {
                open_span: self.open_span.clone(),
            }
        } else if t.replies_pending && !busy && !t.stopped && open_tools.is_empty() {
            // Every thread it waited on has answered: the next turn reads the replies together.
            Next::CallModel {
                open_span: self.open_span.clone(),
            }
        } else if !work.is_empty() {
            Next::RunTools(work)
        } else if !open_tools.is_empty() {
            // Custom tool calls and built-in calls waiting for the user's confirmation.
            Next::Rest(StopReason::RequiresAction {
                event_ids: open_tools.clone(),
            })
        } else if busy {
            // Also after an interrupt, which stops the threads too: the session rests once they
            // have.
            Next::Wait
        } else if self.exhausted {
            Next::Rest(StopReason::RetriesExhausted)
        } else if let Some(o) = self.outcome.as_ref().filter(|o| o.active) {
            Next::Evaluate(o.clone())
        } else if self.refused {
            Next::Rest(StopReason::Refusal)
        } else {
            Next::Rest(StopReason::EndTurn)
        }
    }

    fn finish(self) -> Fold {
        let next = self.next();
        Fold {
            messages: self.b.messages,
            next,
            status: self.status,
            usage: self.usage,
            last_rest: self.last_rest,
            outcome: self.outcome,
            prompt_tokens: self.prompt_tokens,
            message_starts: self.b.starts,
            tail: self.tail,
            children: self.threads.children,
            reply: self.threads.reply,
            owes_reply: self.threads.owes_reply,
            input_since_request: self.open_span.is_some() && self.needs_model,
            used_sandbox: self.calls.used_sandbox,
        }
    }
}

#[cfg(test)]
mod tests;
