//! A turn: one model request under its span, streamed with live previews, and the events its
//! response becomes — logged together with the span's end, the usage and, when nothing else is
//! left to do, the rest.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use tokio_util::sync::CancellationToken;

use agentd_models::{Block, Delta, Model, Request};
use agentd_session::{Head, NewEvent, Private, Refusal, events};
use agentd_wire::event::{
    Delta as WireDelta, DeltaTag, Permission, Preview, PreviewRef, RetryStatus, SessionErrorKind,
    SessionErrorObject,
};
use agentd_wire::ids::{self, Kind};
use agentd_wire::usage::ModelUsage;
use agentd_wire::{ContentBlock, EventBody, SessionStatus, StopReason, Usage};

use super::retry::{Retried, with_retries};
use super::tools::{Toolbox, tool_defs};
use super::{Appended, Flow, Harness};
use crate::context::Fold;
use crate::tool_name::ToolName;
use crate::{Previews, Result};

impl Harness {
    /// The tools this turn offers: the agent's own, a coordinator's thread tools, and its MCP
    /// servers' (listed now if this process has not yet; see `mcp`).
    async fn toolbox(
        &self,
        log_id: &str,
        me: Option<&crate::ThreadInfo>,
        agent: &agentd_wire::agent::SessionAgent,
        tail: &mut u64,
    ) -> Result<Toolbox> {
        let mut toolbox = Toolbox::of(&agent.spec.tools, self.cfg.web_search.is_some());
        if me.is_none() {
            toolbox.add_thread_tools(agent);
        }
        let session_id = me.map_or(log_id, |t| t.session_id.as_str());
        toolbox.add_mcp(self.mcp_offers(log_id, session_id, agent, tail).await?);
        Ok(toolbox)
    }

    /// One model request under `span`, retried on transient failures.
    pub(super) async fn turn(
        &self,
        log_id: &str,
        me: Option<&crate::ThreadInfo>,
        f: &Fold,
        span: String,
        tail: u64,
        cancel: &CancellationToken,
    ) -> Result<Flow> {
        let is_child = me.is_some();
        // A worker rests through the fold, which also delivers its reply; a coordinator with
        // threads at work does not rest at all; nor does a request made again after input
        // arrived, which the fold of its tail holds for the next turn.
        let may_rest = !is_child && f.busy_children().next().is_none() && !f.input_since_request;
        let agent = self.catalog.session_agent(log_id).await?;
        let (model, upstream_id) = match self.models.resolve(&agent.spec.model.id) {
            Ok(m) => m,
            Err(e) => {
                let err = error_event(
                    SessionErrorKind::ModelRequestFailedError,
                    e.to_string(),
                    RetryStatus::Terminal,
                );
                let rest = Some(StopReason::EndTurn).filter(|_| may_rest);
                return self.failed(log_id, tail, err, &span, rest).await;
            }
        };
        let mut tail = tail;
        let toolbox = self.toolbox(log_id, me, &agent, &mut tail).await?;
        let request = Request {
            model: upstream_id,
            system: self.system_prompt(&agent.spec.system, &toolbox),
            messages: f.messages.clone(),
            tools: tool_defs(&toolbox),
            max_tokens: self.cfg.max_tokens,
            purpose: agentd_models::Purpose::Turn,
        };
        // Where the previews of the next attempt follow on; a logged retry moves it.
        let tail = AtomicU64::new(tail);
        let (hub, model, request, tail_now) = (&self.previews, model.as_ref(), &request, &tail);
        let on_retry = |attempt, e: &agentd_models::Error, _pause| {
            tracing::warn!(session = log_id, attempt, error = %e, "model request failed; retrying");
            let err = error_event(error_kind(e), e.to_string(), RetryStatus::Retrying);
            // The session's status says it waits to try again (a worker thread's log keeps
            // its own statuses).
            let mut logged = vec![err];
            if !is_child {
                logged.push(NewEvent::new(EventBody::SessionStatusRescheduled {}));
            }
            let n = logged.len() as u64;
            async move {
                match self.append(log_id, events(logged)).await? {
                    // Only when nothing else landed: otherwise the outcome must not rest over
                    // events this turn never folded.
                    Appended::Done(h) if h.last_seq == tail_now.load(Relaxed) + n => {
                        tail_now.store(h.last_seq, Relaxed);
                    }
                    Appended::Done(_) | Appended::Stale => {}
                    Appended::Terminated => return Ok(Flow::Stop),
                }
                Ok(Flow::Continue)
            }
        };
        let attempt = |n: u32| async move {
            if n > 1 && !is_child {
                self.resumed(log_id, tail_now).await;
            }
            let mut previews = PreviewIds::new(log_id, hub, tail_now.load(Relaxed));
            call(model, request, &mut previews)
                .await
                .map(|resp| (resp, previews))
        };
        let (result, attempts) =
            match with_retries(&self.cfg.retry, Some(cancel), on_retry, attempt).await? {
                Retried::Finished { result, attempts } => (result, attempts),
                Retried::Cancelled => {
                    let end = span_end(&span, true, ModelUsage::default());
                    self.append(log_id, events(vec![end])).await?;
                    return Ok(Flow::Stop);
                }
                // The session was terminated; the next fold sees it.
                Retried::Abandoned => return Ok(Flow::Continue),
            };
        let tail = tail.into_inner();
        match result {
            Ok((mut resp, previews)) => {
                let (judged, judging) = self
                    .judge_calls(
                        log_id,
                        &agent.spec.model.id,
                        f,
                        &resp.content,
                        &toolbox,
                        cancel,
                    )
                    .await;
                resp.usage.add(&judging);
                let cost = self.cost(&agent.spec.model.id, &resp.usage);
                let (evs, rest) =
                    answered(f, me, &span, (resp, cost), (&previews, &judged), &toolbox);
                self.finish(log_id, tail, evs, rest.filter(|_| may_rest))
                    .await?;
            }
            Err(e) => {
                tracing::warn!(session = log_id, attempt = attempts, error = %e, "model request failed for good");
                let (status, rest) = if e.retryable() {
                    (RetryStatus::Exhausted, StopReason::RetriesExhausted)
                } else {
                    (RetryStatus::Terminal, StopReason::EndTurn)
                };
                let err = error_event(error_kind(&e), e.to_string(), status);
                let rest = Some(rest).filter(|_| may_rest);
                return self.failed(log_id, tail, err, &span, rest).await;
            }
        }
        Ok(Flow::Continue)
    }

    /// The request could not be made or failed for good: `err` is logged with the span's end.
    async fn failed(
        &self,
        log_id: &str,
        tail: u64,
        err: NewEvent,
        span: &str,
        rest: Option<StopReason>,
    ) -> Result<Flow> {
        let end = span_end(span, true, ModelUsage::default());
        self.finish(log_id, tail, vec![err, end], rest).await?;
        Ok(Flow::Continue)
    }

    /// Back from rescheduling: the session runs again. Only the status is at stake, so a
    /// failure to log it leaves `rescheduling` until the turn's end says otherwise.
    async fn resumed(&self, log_id: &str, tail_now: &AtomicU64) {
        let running = events(vec![NewEvent::new(EventBody::SessionStatusRunning {})]);
        if let Ok(Appended::Done(h)) = self.append(log_id, running).await
            && h.last_seq == tail_now.load(Relaxed) + 1
        {
            tail_now.store(h.last_seq, Relaxed);
        }
    }

    /// The agent's system prompt; an agent whose tools run in a sandbox is also told where its
    /// deliverables go.
    fn system_prompt(&self, system: &Option<String>, toolbox: &Toolbox) -> Option<String> {
        if !(toolbox.uses_sandbox() && self.sandboxes.is_some()) {
            return system.clone();
        }
        Some(match system {
            None => crate::outputs::PROMPT.to_owned(),
            Some(s) => format!("{s}\n\n{}", crate::outputs::PROMPT),
        })
    }

    /// Append a turn's outcome, and in the same transaction rest the log with `rest` if
    /// nothing was logged since `tail` (otherwise the next fold decides).
    async fn finish(
        &self,
        log_id: &str,
        tail: u64,
        mut evs: Vec<NewEvent>,
        rest: Option<StopReason>,
    ) -> Result<()> {
        if rest.is_some() {
            // Only a session's own log rests here (a worker rests through the fold): what its
            // agent delivered is listed before the rest is.
            self.collect_outputs(log_id).await?;
        }
        let guard: agentd_session::Guard = Box::new(move |head: &Head| {
            if head.status == SessionStatus::Terminated {
                return Err(Refusal::Terminated);
            }
            if let Some(rest) = rest.filter(|_| head.last_seq == tail) {
                evs.push(NewEvent::new(EventBody::SessionStatusIdle {
                    stop_details: stop_details(&rest),
                    stop_reason: rest,
                }));
            }
            Ok(evs)
        });
        self.append(log_id, guard).await?;
        Ok(())
    }
}

async fn call(
    model: &dyn Model,
    request: &Request,
    previews: &mut PreviewIds<'_>,
) -> agentd_models::Result<agentd_models::Response> {
    model.complete(request, &mut |d| previews.on_delta(d)).await
}
/// The events a response logs — its content, copies of a worker's calls that wait on the user,
/// the span's end and the usage — and the rest it allows.
fn answered(
    f: &Fold,
    me: Option<&crate::ThreadInfo>,
    span: &str,
    (resp, cost): (agentd_models::Response, u64),
    (previews, judged): (&PreviewIds<'_>, &HashMap<String, Permission>),
    toolbox: &Toolbox,
) -> (Vec<NewEvent>, Option<StopReason>) {
    let mut total = f.usage.clone();
    total.add(&resp.usage);
    let refused = resp.stop_reason == agentd_models::StopReason::Refusal;
    let (mut evs, calls) = response_events(resp.content, previews, toolbox, judged);
    if let Some(t) = me {
        // The session's log shows a worker's calls that wait on the user, so one stream is
        // enough to answer them.
        let copies: Vec<NewEvent> = evs
            .iter()
            .filter(|e| calls.waiting.contains(&e.id))
            .map(|e| crate::threads::copy_to_session(e, t))
            .collect();
        evs.extend(copies);
    }
    evs.push(span_end_ok(span, resp.usage).with_private(Private::Cost {
        pico_usd: cost,
        refused,
    }));
    evs.push(NewEvent::new(EventBody::SessionUsage {
        usage: snapshot(total),
    }));
    // Rest only when nothing is left for the harness itself to do: no built-in call to run, no
    // outcome to grade.
    let grading = f.outcome.as_ref().is_some_and(|o| o.active);
    let rest = if calls.runnable || (grading && calls.waiting.is_empty()) {
        None
    } else if calls.waiting.is_empty() && refused {
        Some(StopReason::Refusal)
    } else if calls.waiting.is_empty() {
        Some(StopReason::EndTurn)
    } else {
        Some(StopReason::RequiresAction {
            event_ids: calls.waiting,
        })
    };
    (evs, rest)
}

/// Mints the ids of events still streaming and publishes their previews, so the final events
/// carry the ids the previews named.
struct PreviewIds<'a> {
    log_id: &'a str,
    previews: &'a Previews,
    publish: bool,
    /// The log position the previews follow: the request's start is durable up to here.
    after: u64,
    /// Block index → id of the event the block lands in.
    ids: HashMap<u32, String>,
    /// Block index → position of the block inside its event's content.
    slot: HashMap<u32, u32>,
}

impl<'a> PreviewIds<'a> {
    fn new(log_id: &'a str, previews: &'a Previews, after: u64) -> Self {
        PreviewIds {
            log_id,
            previews,
            publish: previews.wanted(log_id),
            after,
            ids: HashMap::new(),
            slot: HashMap::new(),
        }
    }

    fn on_delta(&mut self, d: Delta) {
        match d {
            Delta::Started => {}
            Delta::TextStart { index } => {
                // Consecutive text blocks become one agent.message, as in `response_events`.
                let joined = index
                    .checked_sub(1)
                    .and_then(|p| self.slot.get(&p).map(|s| (p, *s)))
                    .filter(|(p, _)| self.ids.contains_key(p) && self.is_text(*p));
                let (id, slot) = match joined {
                    Some((p, s)) => (self.ids[&p].clone(), s + 1),
                    None => {
                        let id = ids::new(Kind::Event);
                        self.emit(Preview::EventStart {
                            event: PreviewRef {
                                id: id.clone(),
                                kind: "agent.message".into(),
                            },
                        });
                        (id, 0)
                    }
                };
                self.ids.insert(index, id);
                self.slot.insert(index, slot);
            }
            Delta::Text { index, text } => {
                if let (Some(id), Some(slot)) = (self.ids.get(&index), self.slot.get(&index)) {
                    let p = Preview::EventDelta {
                        event_id: id.clone(),
                        delta: WireDelta {
                            kind: DeltaTag::ContentDelta,
                            content: ContentBlock::text(text),
                            index: Some(*slot),
                        },
                    };
                    self.emit(p);
                }
            }
            Delta::ThinkingStart { index } => {
                let id = ids::new(Kind::Event);
                self.emit(Preview::EventStart {
                    event: PreviewRef {
                        id: id.clone(),
                        kind: "agent.thinking".into(),
                    },
                });
                self.ids.insert(index, id);
            }
        }
    }

    fn is_text(&self, index: u32) -> bool {
        self.slot.contains_key(&index)
    }

    fn emit(&self, p: Preview) {
        if self.publish {
            self.previews.publish(self.log_id, self.after, p);
        }
    }

    fn id_for(&self, index: u32) -> String {
        self.ids
            .get(&index)
            .cloned()
            .unwrap_or_else(|| ids::new(Kind::Event))
    }
}

/// What a response asked of tools.
struct Calls {
    /// Calls waiting for the user: custom tools and built-ins that need confirmation.
    waiting: Vec<String>,
    /// Whether some built-in call is the harness's to answer now.
    runnable: bool,
}

/// The events for a model response, and what its tool calls wait on.
fn response_events(
    content: Vec<Block>,
    ids: &PreviewIds<'_>,
    tb: &Toolbox,
    judged: &HashMap<String, Permission>,
) -> (Vec<NewEvent>, Calls) {
    let mut out: Vec<NewEvent> = Vec::new();
    let mut calls = Calls {
        waiting: Vec::new(),
        runnable: false,
    };
    let mut text_open = false;
    for (i, block) in content.into_iter().enumerate() {
        let i = i as u32;
        match block {
            Block::Text { text } => {
                if text_open
                    && let Some(EventBody::AgentMessage { content }) =
                        out.last_mut().map(|e| &mut e.body)
                {
                    content.push(ContentBlock::text(text));
                    continue;
                }
                out.push(NewEvent {
                    id: ids.id_for(i),
                    body: EventBody::AgentMessage {
                        content: vec![ContentBlock::text(text)],
                    },
                    private: None,
                    to: None,
                });
                text_open = true;
                continue;
            }
            Block::Thinking {
                thinking,
                signature,
            } => out.push(NewEvent {
                id: ids.id_for(i),
                body: EventBody::AgentThinking {},
                private: Some(Private::Thinking {
                    thinking,
                    signature,
                }),
                to: None,
            }),
            Block::RedactedThinking { data } => out.push(NewEvent {
                id: ids.id_for(i),
                body: EventBody::AgentThinking {},
                private: Some(Private::RedactedThinking { data }),
                to: None,
            }),
            Block::ToolUse { id, name, input } => {
                let e = tool_use_event(&id, name, input, tb, judged, &mut calls);
                out.push(e);
            }
            Block::Image { .. } | Block::Document { .. } | Block::ToolResult { .. } => {}
        }
        text_open = false;
    }
    (out, calls)
}

/// The event of one tool call of a response, with the permission it gets (`judged` for an
/// `auto` call), noted in `calls`.
fn tool_use_event(
    id: &str,
    name: String,
    input: serde_json::Value,
    tb: &Toolbox,
    judged: &HashMap<String, Permission>,
    calls: &mut Calls,
) -> NewEvent {
    // An `auto` call as judged; one not judged is put to the user.
    let verdict = tb
        .is_auto(&name)
        .then(|| judged.get(id).copied().unwrap_or(Permission::Ask));
    let input = match input {
        serde_json::Value::Object(m) => m,
        other => {
            let mut m = serde_json::Map::new();
            m.insert("value".into(), other);
            m
        }
    };
    let e = if tb.is_custom(&name) {
        calls.waiting.push(String::new());
        NewEvent::new(EventBody::AgentCustomToolUse {
            name,
            input,
            session_thread_id: None,
        })
    } else if let Some(t) = tb.mcp_tool(&name) {
        let permission = verdict.unwrap_or(t.permission);
        match permission {
            Permission::Ask => calls.waiting.push(String::new()),
            Permission::Allow | Permission::Deny => calls.runnable = true,
        }
        NewEvent::new(EventBody::AgentMcpToolUse {
            name: t.tool.clone(),
            mcp_server_name: t.server.clone(),
            input,
            evaluated_permission: Some(permission),
            session_thread_id: None,
        })
    } else {
        // Built-in, or unknown (denied, so the model hears why).
        let permission = verdict.unwrap_or_else(|| {
            tb.permission(&ToolName::parse(&name))
                .unwrap_or(Permission::Deny)
        });
        match permission {
            Permission::Ask => calls.waiting.push(String::new()),
            Permission::Allow | Permission::Deny => calls.runnable = true,
        }
        NewEvent::new(EventBody::AgentToolUse {
            name,
            input,
            evaluated_permission: Some(permission),
            session_thread_id: None,
        })
    };
    if let Some(slot) = calls.waiting.last_mut().filter(|s| s.is_empty()) {
        slot.clone_from(&e.id);
    }
    e
}

fn span_end(start: &str, is_error: bool, usage: ModelUsage) -> NewEvent {
    NewEvent::new(EventBody::SpanModelRequestEnd {
        model_request_start_id: start.to_owned(),
        is_error: Some(is_error),
        model_usage: usage,
    })
}

fn span_end_ok(start: &str, usage: ModelUsage) -> NewEvent {
    span_end(start, false, usage)
}

fn error_event(kind: SessionErrorKind, message: String, retry_status: RetryStatus) -> NewEvent {
    NewEvent::new(EventBody::SessionError {
        error: SessionErrorObject {
            kind,
            message,
            retry_status,
            mcp_server_name: None,
        },
    })
}

fn error_kind(e: &agentd_models::Error) -> SessionErrorKind {
    match e {
        agentd_models::Error::RateLimited { .. } => SessionErrorKind::ModelRateLimitedError,
        agentd_models::Error::Overloaded { .. } => SessionErrorKind::ModelOverloadedError,
        _ => SessionErrorKind::ModelRequestFailedError,
    }
}

fn snapshot(u: Usage) -> Usage {
    Usage {
        active_seconds: None,
        ..u
    }
}

/// The `stop_details` of a rest: a refusal's. The upstream's category and explanation are not
/// carried from the model crate yet; the SDK allows both to be null.
pub(super) fn stop_details(rest: &StopReason) -> Option<serde_json::Value> {
    (*rest == StopReason::Refusal)
        .then(|| serde_json::json!({"type": "refusal", "category": null, "explanation": null}))
}
