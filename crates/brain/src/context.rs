//! The fold from a session's log to what the harness needs: the model's messages and what
//! to do next. Pure: the same events always give the same answer.

use agentd_models::{Block, Message, Role};
use agentd_session::{Private, StoredEvent};
use agentd_wire::event::{Check, OutcomeResult};
use agentd_wire::event::{
    Confirmation, OUTCOME_DEFAULT_ITERATIONS, OUTCOME_MAX_ITERATIONS, Permission, RetryStatus,
    Rubric,
};
use agentd_wire::{ContentBlock, EventBody, SessionStatus, StopReason, Usage};

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

/// The outcome the session works toward, as far as the log says.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub id: String,
    pub description: String,
    pub rubric: String,
    /// Exact checks run before the model grader.
    pub checks: Vec<Check>,
    pub max_iterations: u32,
    /// The iteration of the next (or the open) evaluation.
    pub iteration: u32,
    /// An evaluation whose start was logged and whose end was not.
    pub open_eval: Option<String>,
    /// The agent's latest message since the outcome was defined: the work to grade.
    pub answer: String,
    /// Still being worked on and graded.
    pub active: bool,
}

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

/// Where a built-in call stands.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Allowed,
    AwaitingConfirmation,
    Denied(String),
    Started,
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
}

impl Fold {
    pub fn busy_children(&self) -> impl Iterator<Item = &Child> {
        self.children.iter().filter(|c| c.busy)
    }
}

pub fn fold(events: &[StoredEvent]) -> Fold {
    let mut b = Builder::default();
    let mut needs_model = false;
    let mut open_span: Option<String> = None;
    let mut exhausted = false;
    let mut status = SessionStatus::Idle;
    let mut usage = Usage::default();
    let mut last_rest = None;
    // Prompt size of the last model request, the measure of how full the context is.
    let mut prompt_tokens = 0;
    let mut outcome: Option<Outcome> = None;
    // User messages that arrived while a request was in flight, for after its response.
    let mut held: Vec<Vec<Block>> = Vec::new();
    // The request in flight was interrupted: calls in its response are void.
    let mut cut = false;
    let mut tail = 0;
    // Open built-in calls by event id, with their name and input, in call order.
    let mut builtin: Vec<(String, ToolName, serde_json::Value, Call)> = Vec::new();
    let mut children: Vec<Child> = Vec::new();
    // A thread message is input the model has not seen yet.
    let mut replies_pending = false;
    // The user interrupted: replies from threads no longer start a turn by themselves.
    let mut stopped = false;
    let mut reply = Reply::default();
    let mut owes_reply = false;
    for e in events {
        tail = e.seq;
        b.at = e.seq;
        if e.event.body.copied_from().is_some() {
            // A worker's call shown here for the user; its own log has it.
            continue;
        }
        if let Some(s) = agentd_session::status_after(&e.event.body) {
            status = s;
        }
        match &e.event.body {
            EventBody::UserMessage { content } => {
                let blocks: Vec<Block> = content.iter().map(to_block).collect();
                if open_span.is_some() {
                    // The request in flight was made without it: it joins the context after
                    // that request's response, so the next request ends with the user's turn.
                    held.push(blocks);
                } else {
                    b.close_open_tools("The user sent a new message before this tool returned.");
                    builtin.clear();
                    b.flush_held();
                    b.push(Role::User, blocks);
                }
                needs_model = true;
                exhausted = false;
                stopped = false;
                reply = Reply::default();
            }
            EventBody::AgentThreadMessageReceived {
                from_session_thread_id,
                from_agent_name,
                content,
            } => {
                match from_agent_name {
                    // A worker's reply, named so the coordinator can tell its workers apart.
                    Some(name) => b.held.push(Block::Text {
                        text: format!(
                            "Message from thread {from_session_thread_id} (agent `{name}`):\n{}",
                            ContentBlock::join_text(content)
                        ),
                    }),
                    // Work from the coordinator, which is this thread's user.
                    None => b.held.extend(content.iter().map(to_block)),
                }
                if let Some(c) = children
                    .iter_mut()
                    .find(|c| c.id == *from_session_thread_id)
                {
                    c.busy = false;
                }
                if open_span.is_none() && b.open_tools.is_empty() {
                    b.flush_held();
                }
                replies_pending = true;
                exhausted = false;
                if from_agent_name.is_none() {
                    // New work from the coordinator; a follow-up that comes before the worker
                    // answered adds to what it owes, it does not erase what it said.
                    stopped = false;
                    owes_reply = true;
                }
            }
            EventBody::SessionThreadCreated {
                session_thread_id,
                agent_name,
            } => children.push(Child {
                id: session_thread_id.clone(),
                agent_name: agent_name.clone(),
                busy: true,
            }),
            EventBody::AgentThreadMessageSent {
                to_session_thread_id,
                to_agent_name,
                ..
            } => {
                if let Some(c) = children.iter_mut().find(|c| c.id == *to_session_thread_id) {
                    c.busy = true;
                }
                if to_agent_name.is_none() {
                    // A worker's reply to its coordinator: the next one starts afresh.
                    owes_reply = false;
                    reply = Reply::default();
                }
            }
            EventBody::SessionThreadStatusRunning { .. }
            | EventBody::SessionThreadStatusIdle { .. } => {}
            EventBody::UserCustomToolResult {
                custom_tool_use_id,
                content,
                is_error,
                ..
            } => {
                if b.answer(
                    custom_tool_use_id,
                    content.as_deref().unwrap_or_default(),
                    is_error.unwrap_or(false),
                    open_span.is_some(),
                ) {
                    needs_model = true;
                    exhausted = false;
                }
            }
            EventBody::UserInterrupt { .. } => {
                // Tool calls of a response that lands after the interrupt never run.
                cut = open_span.is_some();
                stopped = true;
                replies_pending = false;
                reply.interrupted = true;
                b.close_open_tools("The user interrupted before this tool returned.");
                builtin.clear();
                needs_model = false;
                // An interrupt stops the outcome loop; an evaluation in flight is closed by
                // the harness as `interrupted`.
                if let Some(o) = outcome.as_mut().filter(|o| o.open_eval.is_none()) {
                    o.active = false;
                }
            }
            EventBody::UserDefineOutcome {
                outcome_id,
                description,
                rubric,
                max_iterations,
            } => {
                let (content, checks) = match (rubric, &e.private) {
                    (Rubric::Text { content, checks }, _) => (content.clone(), checks.clone()),
                    (Rubric::File { .. }, Some(Private::Rubric { text })) => {
                        (text.clone(), Vec::new())
                    }
                    (Rubric::File { file_id }, _) => (
                        format!("(the rubric file {file_id} could not be read)"),
                        Vec::new(),
                    ),
                };
                b.push(
                    Role::User,
                    vec![Block::Text {
                        text: format!(
                            "Work toward this outcome until it is met.\n\nOutcome: {description}\n\nYour work will be judged against this rubric:\n{content}{}",
                            crate::outcomes::describe_checks(&checks)
                        ),
                    }],
                );
                outcome = Some(Outcome {
                    id: outcome_id.clone(),
                    description: description.clone(),
                    rubric: content,
                    checks,
                    max_iterations: max_iterations
                        .unwrap_or(OUTCOME_DEFAULT_ITERATIONS)
                        .clamp(1, OUTCOME_MAX_ITERATIONS),
                    iteration: 0,
                    open_eval: None,
                    answer: String::new(),
                    active: true,
                });
                needs_model = true;
                exhausted = false;
            }
            EventBody::SpanOutcomeEvaluationStart { .. } => {
                if let Some(o) = outcome.as_mut() {
                    o.open_eval = Some(e.event.id.clone());
                }
            }
            EventBody::SpanOutcomeEvaluationEnd {
                iteration,
                result,
                explanation,
                usage: grading,
                ..
            } => {
                usage.add(grading);
                if let Some(o) = outcome.as_mut() {
                    o.open_eval = None;
                    match result {
                        OutcomeResult::NeedsRevision => {
                            o.iteration = iteration + 1;
                            b.push(
                                Role::User,
                                vec![Block::Text {
                                    text: format!(
                                        "A grader judged your work against the rubric: not met yet.\n{explanation}\nRevise your work so it meets every criterion."
                                    ),
                                }],
                            );
                            needs_model = true;
                        }
                        OutcomeResult::MaxIterationsReached => {
                            o.active = false;
                            b.push(
                                Role::User,
                                vec![Block::Text {
                                    text: format!(
                                        "The evaluation budget is spent and the rubric is still not met: {explanation}\nSay briefly where the work stands."
                                    ),
                                }],
                            );
                            needs_model = true;
                        }
                        _ => o.active = false,
                    }
                }
            }
            EventBody::AgentToolUse {
                name,
                input,
                evaluated_permission,
                ..
            } => {
                b.open_tool(&e.event.id, name, input);
                let state = match evaluated_permission {
                    _ if cut => Call::Denied("The user interrupted before this call ran.".into()),
                    Some(Permission::Ask) => Call::AwaitingConfirmation,
                    Some(Permission::Deny) => Call::Denied(format!(
                        "The tool {name:?} is not enabled for this agent, or does not exist."
                    )),
                    Some(Permission::Allow) | None => Call::Allowed,
                };
                builtin.push((
                    e.event.id.clone(),
                    ToolName::parse(name),
                    serde_json::Value::Object(input.clone()),
                    state,
                ));
            }
            EventBody::UserToolConfirmation {
                tool_use_id,
                result,
                deny_message,
                ..
            } => {
                if let Some(call) = builtin.iter_mut().find(|c| c.0 == *tool_use_id)
                    && call.3 == Call::AwaitingConfirmation
                {
                    call.3 = match result {
                        Confirmation::Allow => Call::Allowed,
                        Confirmation::Deny => Call::Denied(match deny_message {
                            Some(m) => format!("The user denied this call: {m}"),
                            None => "The user denied this call.".into(),
                        }),
                    };
                }
            }
            EventBody::ToolStarted { tool_use_id } => {
                if let Some(call) = builtin.iter_mut().find(|c| c.0 == *tool_use_id) {
                    call.3 = Call::Started;
                }
            }
            EventBody::AgentToolResult {
                tool_use_id,
                content,
                is_error,
            } => {
                builtin.retain(|c| c.0 != *tool_use_id);
                if b.answer(
                    tool_use_id,
                    content.as_deref().unwrap_or_default(),
                    is_error.unwrap_or(false),
                    open_span.is_some(),
                ) {
                    needs_model = true;
                    exhausted = false;
                }
            }
            EventBody::SpanModelRequestStart {} => {
                // A request consumes every input logged before it.
                open_span = Some(e.event.id.clone());
                needs_model = false;
                replies_pending = !b.held.is_empty();
                cut = false;
            }
            EventBody::SpanModelRequestEnd { model_usage, .. } => {
                open_span = None;
                for blocks in std::mem::take(&mut held) {
                    b.close_open_tools("The user sent a new message before this tool returned.");
                    builtin.clear();
                    b.push(Role::User, blocks);
                }
                if b.open_tools.is_empty() {
                    b.flush_held();
                }
                usage.add(model_usage);
                prompt_tokens = model_usage.input_tokens
                    + model_usage.cache_read_input_tokens
                    + model_usage.cache_creation_input_tokens;
            }
            EventBody::AgentThreadContextCompacted {} => {
                if let Some(Private::Compaction {
                    summary,
                    upto,
                    usage: spent,
                }) = &e.private
                {
                    usage.add(spent);
                    b.compact(summary, *upto);
                    prompt_tokens = 0;
                }
            }
            EventBody::SessionError { error } => {
                exhausted = error.retry_status == RetryStatus::Exhausted;
                if error.retry_status != RetryStatus::Retrying {
                    reply.failure = Some(error.message.clone());
                }
            }
            EventBody::AgentThinking {} => match &e.private {
                Some(Private::Thinking {
                    thinking,
                    signature,
                }) => b.push(
                    Role::Assistant,
                    vec![Block::Thinking {
                        thinking: thinking.clone(),
                        signature: signature.clone(),
                    }],
                ),
                Some(Private::RedactedThinking { data }) => b.push(
                    Role::Assistant,
                    vec![Block::RedactedThinking { data: data.clone() }],
                ),
                Some(
                    Private::Compaction { .. } | Private::Thread { .. } | Private::Rubric { .. },
                )
                | None => {}
            },
            EventBody::AgentMessage { content } => {
                if let Some(o) = outcome.as_mut() {
                    o.answer = ContentBlock::join_text(content);
                }
                if !reply.text.is_empty() {
                    reply.text.push('\n');
                }
                reply.text.push_str(&ContentBlock::join_text(content));
                b.push(Role::Assistant, content.iter().map(to_block).collect());
            }
            EventBody::AgentCustomToolUse { name, input, .. } => {
                b.open_tool(&e.event.id, name, input);
                if cut {
                    let why = [ContentBlock::text(
                        "The user interrupted before this call ran.",
                    )];
                    b.close_tool(&e.event.id, &why, true);
                }
            }
            EventBody::SessionStatusIdle { stop_reason, .. } => {
                last_rest = Some(stop_reason.clone());
            }
            EventBody::SpanOutcomeEvaluationOngoing { .. }
            | EventBody::SessionStatusRunning {}
            | EventBody::SessionStatusRescheduled {}
            | EventBody::SessionStatusTerminated {}
            | EventBody::SessionUsage { .. }
            | EventBody::SessionUpdated { .. } => {}
        }
    }
    let work: Vec<ToolWork> = builtin
        .iter()
        .filter_map(|(id, name, input, state)| {
            let action = match state {
                Call::Allowed => ToolAction::Run,
                Call::Denied(why) => ToolAction::Deny(why.clone()),
                Call::Started => ToolAction::Interrupted,
                Call::AwaitingConfirmation => return None,
            };
            Some(ToolWork {
                id: id.clone(),
                name: name.clone(),
                input: input.clone(),
                action,
            })
        })
        .collect();
    let busy = children.iter().any(|c| c.busy);
    let next = if status == SessionStatus::Terminated {
        Next::Rest(StopReason::EndTurn)
    } else if open_span.is_some() || needs_model {
        Next::CallModel { open_span }
    } else if replies_pending && !busy && !stopped && b.open_tools.is_empty() {
        // Every thread it waited on has answered: the next turn reads the replies together.
        Next::CallModel { open_span }
    } else if !work.is_empty() {
        Next::RunTools(work)
    } else if !b.open_tools.is_empty() {
        // Custom tool calls and built-in calls waiting for the user's confirmation.
        Next::Rest(StopReason::RequiresAction {
            event_ids: b.open_tools.clone(),
        })
    } else if busy {
        // Also after an interrupt, which stops the threads too: the session rests once they
        // have.
        Next::Wait
    } else if exhausted {
        Next::Rest(StopReason::RetriesExhausted)
    } else if let Some(o) = outcome.as_ref().filter(|o| o.active) {
        Next::Evaluate(o.clone())
    } else {
        Next::Rest(StopReason::EndTurn)
    };
    Fold {
        messages: b.messages.clone(),
        next,
        status,
        usage,
        last_rest,
        outcome,
        prompt_tokens,
        message_starts: b.starts,
        tail,
        children,
        reply,
        owes_reply,
    }
}

#[derive(Default)]
struct Builder {
    messages: Vec<Message>,
    /// The log position of the event each message starts with.
    starts: Vec<u64>,
    /// The position of the event being folded.
    at: u64,
    /// Tool uses the model made that have no result yet, in call order.
    open_tools: Vec<String>,
    /// Messages from other threads that arrived while a request or tool calls were open; they
    /// join the conversation once those close, never between a call and its result.
    held: Vec<Block>,
}

impl Builder {
    /// Append blocks, merging with the previous message of the same role: the Messages API
    /// wants roles to alternate.
    fn push(&mut self, role: Role, blocks: Vec<Block>) {
        if blocks.is_empty() {
            return;
        }
        match self.messages.last_mut() {
            Some(m) if m.role == role => m.content.extend(blocks),
            _ => {
                self.messages.push(Message {
                    role,
                    content: blocks,
                });
                self.starts.push(self.at);
            }
        }
    }

    /// Replace everything before position `upto` with a summary of it.
    fn compact(&mut self, summary: &str, upto: u64) {
        let keep = self
            .starts
            .iter()
            .position(|s| *s >= upto)
            .unwrap_or(self.messages.len());
        let messages = self.messages.split_off(keep);
        let starts = self.starts.split_off(keep);
        self.messages.clear();
        self.starts.clear();
        self.push(
            Role::User,
            vec![Block::Text {
                text: format!(
                    "A summary of the conversation so far (older turns were compacted):\n{summary}"
                ),
            }],
        );
        for (m, s) in messages.into_iter().zip(starts) {
            self.at = s;
            self.push(m.role, m.content);
        }
    }

    /// The model called a tool: its call joins the conversation and waits for a result.
    fn open_tool(
        &mut self,
        id: &str,
        name: &str,
        input: &serde_json::Map<String, serde_json::Value>,
    ) {
        self.push(
            Role::Assistant,
            vec![Block::ToolUse {
                id: id.to_owned(),
                name: name.to_owned(),
                input: serde_json::Value::Object(input.clone()),
            }],
        );
        self.open_tools.push(id.to_owned());
    }

    /// A result for call `id`. True when it was the last open call, which lets the held
    /// messages in (unless a request is still open) and the conversation go on.
    fn answer(
        &mut self,
        id: &str,
        content: &[ContentBlock],
        is_error: bool,
        span_open: bool,
    ) -> bool {
        if !self.close_tool(id, content, is_error) || !self.open_tools.is_empty() {
            return false;
        }
        if !span_open {
            self.flush_held();
        }
        true
    }

    fn flush_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.push(Role::User, held);
    }

    fn close_tool(&mut self, id: &str, content: &[ContentBlock], is_error: bool) -> bool {
        let Some(pos) = self.open_tools.iter().position(|t| t == id) else {
            return false;
        };
        self.open_tools.remove(pos);
        self.push(
            Role::User,
            vec![Block::ToolResult {
                tool_use_id: id.to_owned(),
                content: content.iter().map(to_block).collect(),
                is_error,
            }],
        );
        true
    }

    /// Every tool use needs a result before the conversation goes on; one that never got
    /// one is answered with an error saying why.
    fn close_open_tools(&mut self, why: &str) {
        for id in std::mem::take(&mut self.open_tools) {
            self.push(
                Role::User,
                vec![Block::ToolResult {
                    tool_use_id: id,
                    content: vec![Block::Text { text: why.into() }],
                    is_error: true,
                }],
            );
        }
    }
}

fn to_block(c: &ContentBlock) -> Block {
    match c {
        ContentBlock::Text { text } => Block::Text { text: text.clone() },
        ContentBlock::Image { source } => Block::Image {
            source: source.clone(),
        },
        ContentBlock::Document {
            source,
            title,
            context,
        } => Block::Document {
            source: source.clone(),
            title: title.clone(),
            context: context.clone(),
        },
        ContentBlock::SearchResult { title, content, .. } => Block::Text {
            text: format!(
                "{title}\n{}",
                content
                    .iter()
                    .filter_map(|c| c.get("text").and_then(|t| t.as_str()))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        },
        ContentBlock::Redacted {} => Block::Text {
            text: "[redacted]".into(),
        },
    }
}

#[cfg(test)]
#[path = "context_tests.rs"]
mod tests;
