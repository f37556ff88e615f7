//! `wake(session)`: fold the log, call the model when the log says so, append the outcome.
//!
//! Every step is logged before it is relied on. A model request is bracketed by
//! `span.model_request_start` (logged before the call) and one transaction holding the
//! response, the span's end, the usage and — when nothing arrived meanwhile — the idle status.
//! A crash mid-request leaves an open span that the next wake makes again; the half-streamed
//! response was never logged, so the user sees it once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use agentd_hands::Output;
use agentd_hands::tools::{
    HOST_TOOLS, SANDBOX_TOOLS, WEB_FETCH_LIMIT, WebFetchInput, WebSearchInput,
};
use agentd_models::{Block, Delta, Model, Registry, Request, ToolDef};
use agentd_session::{
    Error as LogError, Head, NewEvent, Private, Refusal, SessionLog, StoredEvent, at_tail, events,
};
use agentd_wire::agent::{PermissionPolicy, Tool};
use agentd_wire::environment::{EnvironmentConfig, Networking};
use agentd_wire::event::Check;
use agentd_wire::event::{
    Delta as WireDelta, DeltaTag, ModelUsage, Permission, Preview, PreviewRef, RetryStatus,
    SessionErrorKind, SessionErrorObject,
};
use agentd_wire::ids::{self, Kind};
use agentd_wire::{ContentBlock, EventBody, SessionStatus, StopReason, Usage};

use crate::context::{Fold, Next, Outcome, ToolAction, ToolWork, fold};
use crate::sandboxes::Sandboxes;
use crate::{Agents, Error, Previews, Result};

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per model request, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(1000),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with jitter; a `Retry-After` from upstream wins when longer.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        let jittered = exp.mul_f64(rand::rng().random_range(0.5..=1.0));
        match retry_after {
            Some(ra) => ra
                .min(self.max_delay.max(Duration::from_secs(60)))
                .max(jittered),
            None => jittered,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HarnessConfig {
    pub retry: RetryPolicy,
    pub max_tokens: u32,
    /// Base URL of a SearXNG-compatible search backend; without one, `web_search` is not
    /// offered.
    pub web_search: Option<String>,
    /// When to compact the model's context; None never does.
    pub compaction: Option<Compaction>,
    /// How often a running outcome evaluation logs `span.outcome_evaluation_ongoing`.
    pub outcome_heartbeat: Duration,
    /// Most threads a coordinator may start in one session.
    pub max_threads: usize,
}

/// Context compaction: once a request's prompt reaches `at_tokens`, older turns are replaced
/// in the model's context by a summary the model writes; the log keeps every event.
#[derive(Debug, Clone, Copy)]
pub struct Compaction {
    pub at_tokens: u64,
    /// Recent messages kept verbatim (about; the cut falls before an assistant message).
    pub keep_messages: usize,
}

impl Default for HarnessConfig {
    fn default() -> Self {
        HarnessConfig {
            retry: RetryPolicy::default(),
            max_tokens: 8192,
            web_search: None,
            compaction: Some(Compaction {
                at_tokens: 150_000,
                keep_messages: 6,
            }),
            outcome_heartbeat: Duration::from_secs(10),
            max_threads: 16,
        }
    }
}

#[derive(Clone)]
pub struct Harness {
    log: Arc<dyn SessionLog>,
    agents: Arc<dyn Agents>,
    models: Arc<Registry>,
    previews: Previews,
    cfg: Arc<HarnessConfig>,
    sandboxes: Option<Arc<Sandboxes>>,
    /// Where to ask for another log to be woken (a thread given work, a parent given a reply).
    wakeups: Option<tokio::sync::mpsc::UnboundedSender<String>>,
}

/// How a wake's attempt to append ended.
enum Appended {
    Done(Head),
    /// The log moved on since the fold; fold again.
    Stale,
    Terminated,
}

impl Harness {
    pub fn new(
        log: Arc<dyn SessionLog>,
        agents: Arc<dyn Agents>,
        models: Arc<Registry>,
        previews: Previews,
        cfg: HarnessConfig,
    ) -> Self {
        Harness {
            log,
            agents,
            models,
            previews,
            cfg: Arc::new(cfg),
            sandboxes: None,
            wakeups: None,
        }
    }

    /// Send the ids of logs this harness gives work to here, for a scheduler to wake them.
    pub fn with_wakeups(mut self, tx: tokio::sync::mpsc::UnboundedSender<String>) -> Self {
        self.wakeups = Some(tx);
        self
    }

    fn wake_log(&self, log_id: &str) {
        if let Some(tx) = &self.wakeups {
            let _ = tx.send(log_id.to_owned());
        }
    }

    /// Run built-in tools in these sandboxes; without them such calls fail with an error the
    /// model sees.
    pub fn with_sandboxes(mut self, sandboxes: Arc<Sandboxes>) -> Self {
        self.sandboxes = Some(sandboxes);
        self
    }

    pub fn sandboxes(&self) -> Option<&Arc<Sandboxes>> {
        self.sandboxes.as_ref()
    }

    pub fn log(&self) -> &Arc<dyn SessionLog> {
        &self.log
    }

    /// Bring the session to rest: run model turns until the log asks for nothing more.
    /// Returns early, without resting, when `cancel` fires (an interrupt); the caller wakes
    /// the session again to log the rest.
    #[expect(clippy::too_many_lines, reason = "split in issue 15")]
    pub async fn wake(&self, session_id: &str, cancel: &CancellationToken) -> Result<()> {
        let mut log: Vec<StoredEvent> = Vec::new();
        // A child thread reports its status and replies to the thread that started it.
        let me = self.agents.thread(session_id).await?;
        // A worker's tools run over its session's workspace.
        let workspace = me.as_ref().map_or(session_id, |t| t.session_id.as_str());
        let mut first = true;
        loop {
            self.catch_up(session_id, &mut log).await?;
            let f = fold(&log);
            if std::mem::take(&mut first) {
                // Threads this one waits on may have been cut short by a restart before they
                // began: make sure each is being worked on (a wake with nothing to do is cheap).
                for c in f.busy_children() {
                    self.wake_log(&c.id);
                }
            }
            match f.next.clone() {
                Next::Rest(reason) => {
                    // Log a rest when the session was working, or when what it waits for
                    // changed while it rested (an interrupt closing the calls it waited on).
                    let working = matches!(
                        f.status,
                        SessionStatus::Running | SessionStatus::Rescheduling
                    );
                    let stale = f.status == SessionStatus::Idle
                        && f.last_rest.as_ref().is_some_and(|r| *r != reason);
                    // A worker stopped before it ever ran (an interrupt right after its task
                    // came) still owes its coordinator an answer.
                    let waiting_on_user = matches!(reason, StopReason::RequiresAction { .. });
                    let unanswered = me.is_some() && f.owes_reply && !waiting_on_user;
                    if !working && !stale && !unanswered {
                        return Ok(());
                    }
                    let mut batch = match &me {
                        Some(t) => crate::threads::rest(t, &reason, &f.reply),
                        None => Vec::new(),
                    };
                    batch.push(NewEvent::new(EventBody::SessionStatusIdle {
                        stop_reason: reason,
                        stop_details: None,
                    }));
                    match self.append(session_id, at_tail(f.tail, batch)).await? {
                        Appended::Stale => continue,
                        Appended::Done(_) => {
                            if let Some(t) = me.as_ref().filter(|_| !waiting_on_user) {
                                // Its reply is in: the coordinator may go on.
                                self.wake_log(&t.parent_log);
                            }
                            return Ok(());
                        }
                        Appended::Terminated => return Ok(()),
                    }
                }
                Next::Wait => return Ok(()),
                Next::Evaluate(outcome) => {
                    if cancel.is_cancelled()
                        || !self.evaluate(session_id, &f, outcome, cancel).await?
                    {
                        return Ok(());
                    }
                }
                Next::RunTools(work) => {
                    if cancel.is_cancelled()
                        || !self
                            .run_tools(session_id, workspace, &f, work, cancel)
                            .await?
                    {
                        return Ok(());
                    }
                }
                Next::CallModel { open_span } => {
                    if cancel.is_cancelled() {
                        return Ok(());
                    }
                    if open_span.is_none()
                        && let Some(c) = self.cfg.compaction
                        && f.prompt_tokens >= c.at_tokens
                        && self.compact(session_id, &f, c, cancel).await?
                    {
                        continue;
                    }
                    let mut batch = Vec::new();
                    if f.status != SessionStatus::Running {
                        batch.push(NewEvent::new(EventBody::SessionStatusRunning {}));
                        if let Some(t) = &me {
                            batch.push(crate::threads::running(t));
                        }
                    }
                    let span = match open_span {
                        Some(id) => id,
                        None => {
                            let start = NewEvent::new(EventBody::SpanModelRequestStart {});
                            let id = start.id.clone();
                            batch.push(start);
                            id
                        }
                    };
                    let mut tail = f.tail;
                    if !batch.is_empty() {
                        match self.append(session_id, at_tail(f.tail, batch)).await? {
                            Appended::Done(h) => tail = h.last_seq,
                            Appended::Stale => continue,
                            Appended::Terminated => return Ok(()),
                        }
                    }
                    if !self
                        .turn(session_id, me.as_ref(), &f, span, tail, cancel)
                        .await?
                    {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Read what was appended since `log`'s last event.
    async fn catch_up(&self, session_id: &str, log: &mut Vec<StoredEvent>) -> Result<()> {
        loop {
            let after = log.last().map_or(0, |e| e.seq);
            let page = self.log.read(session_id, after, 1000).await?;
            let n = page.len();
            log.extend(page);
            if n < 1000 {
                return Ok(());
            }
        }
    }

    async fn append(&self, session_id: &str, guard: agentd_session::Guard) -> Result<Appended> {
        match self.log.append(session_id, guard).await {
            Ok((head, _)) => Ok(Appended::Done(head)),
            Err(LogError::Refused(Refusal::Stale { .. })) => Ok(Appended::Stale),
            Err(LogError::Refused(Refusal::Terminated)) => Ok(Appended::Terminated),
            Err(LogError::NotFound(id)) => Err(Error::SessionNotFound(id)),
            Err(e) => Err(e.into()),
        }
    }

    /// One model request under `span`, retried on transient failures. Returns false when
    /// interrupted.
    #[expect(clippy::too_many_lines, reason = "split in issue 15")]
    async fn turn(
        &self,
        session_id: &str,
        me: Option<&crate::ThreadInfo>,
        f: &Fold,
        span: String,
        mut tail: u64,
        cancel: &CancellationToken,
    ) -> Result<bool> {
        let is_child = me.is_some();
        // A worker rests through the fold, which also delivers its reply; a coordinator with
        // threads at work does not rest at all.
        let may_rest = !is_child && f.busy_children().next().is_none();
        let agent = self.agents.session_agent(session_id).await?;
        let (model, upstream_id) = match self.models.resolve(&agent.spec.model.id) {
            Ok(m) => m,
            Err(e) => {
                let err = error_event(
                    SessionErrorKind::ModelRequestFailedError,
                    e.to_string(),
                    RetryStatus::Terminal,
                );
                self.finish(
                    session_id,
                    tail,
                    vec![err, span_end(&span, true, ModelUsage::default())],
                    Some(StopReason::EndTurn).filter(|_| may_rest),
                )
                .await?;
                return Ok(true);
            }
        };
        let mut toolbox = Toolbox::of(&agent.spec.tools, self.cfg.web_search.is_some());
        if !is_child {
            toolbox.add_thread_tools(&agent);
        }
        let request = Request {
            model: upstream_id,
            system: agent.spec.system.clone(),
            messages: f.messages.clone(),
            tools: tool_defs(&toolbox),
            max_tokens: self.cfg.max_tokens,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut previews = PreviewIds::new(session_id, &self.previews, tail);
            let outcome = tokio::select! {
                r = call(model.as_ref(), &request, &mut previews) => r,
                () = cancel.cancelled() => {
                    self.append(session_id, events(vec![span_end(&span, true, ModelUsage::default())])).await?;
                    return Ok(false);
                }
            };
            match outcome {
                Ok(resp) => {
                    let mut total = f.usage;
                    total.add(&resp.usage);
                    let (mut evs, calls) = response_events(resp.content, &previews, &toolbox);
                    if let Some(t) = me {
                        // The session's log shows a worker's calls that wait on the user, so
                        // one stream is enough to answer them.
                        let copies: Vec<NewEvent> = evs
                            .iter()
                            .filter(|e| calls.waiting.contains(&e.id))
                            .map(|e| crate::threads::copy_to_session(e, t))
                            .collect();
                        evs.extend(copies);
                    }
                    evs.push(span_end_ok(&span, resp.usage));
                    evs.push(NewEvent::new(EventBody::SessionUsage {
                        usage: snapshot(total),
                    }));
                    // Rest only when nothing is left for the harness itself to do: no built-in
                    // call to run, no outcome to grade.
                    let grading = f.outcome.as_ref().is_some_and(|o| o.active);
                    let rest = if calls.runnable || (grading && calls.waiting.is_empty()) {
                        None
                    } else if calls.waiting.is_empty() {
                        Some(StopReason::EndTurn)
                    } else {
                        Some(StopReason::RequiresAction {
                            event_ids: calls.waiting,
                        })
                    };
                    self.finish(session_id, tail, evs, rest.filter(|_| may_rest))
                        .await?;
                    return Ok(true);
                }
                Err(e) if e.retryable() && attempt < self.cfg.retry.max_attempts => {
                    tracing::warn!(session = session_id, attempt, error = %e, "model request failed; retrying");
                    let err = error_event(error_kind(&e), e.to_string(), RetryStatus::Retrying);
                    match self.append(session_id, events(vec![err])).await? {
                        // Only when nothing else landed: otherwise the outcome must not rest
                        // over events this turn never folded.
                        Appended::Done(h) if h.last_seq == tail + 1 => tail = h.last_seq,
                        Appended::Done(_) => {}
                        Appended::Stale => {}
                        Appended::Terminated => return Ok(true),
                    }
                    let pause = self.cfg.retry.delay(attempt, e.retry_after());
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = cancel.cancelled() => {
                            self.append(session_id, events(vec![span_end(&span, true, ModelUsage::default())])).await?;
                            return Ok(false);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(session = session_id, attempt, error = %e, "model request failed for good");
                    let (status, rest) = if e.retryable() {
                        (RetryStatus::Exhausted, StopReason::RetriesExhausted)
                    } else {
                        (RetryStatus::Terminal, StopReason::EndTurn)
                    };
                    let err = error_event(error_kind(&e), e.to_string(), status);
                    self.finish(
                        session_id,
                        tail,
                        vec![err, span_end(&span, true, ModelUsage::default())],
                        Some(rest).filter(|_| may_rest),
                    )
                    .await?;
                    return Ok(true);
                }
            }
        }
    }

    /// Grade the agent's latest work against the session's outcome, in a model call of its own
    /// that sees the rubric and what the agent produced — never its reasoning. Returns false
    /// when interrupted.
    async fn evaluate(
        &self,
        session_id: &str,
        f: &Fold,
        o: Outcome,
        cancel: &CancellationToken,
    ) -> Result<bool> {
        let start = match &o.open_eval {
            Some(id) => id.clone(),
            None => {
                let ev = NewEvent::new(EventBody::SpanOutcomeEvaluationStart {
                    outcome_id: o.id.clone(),
                    iteration: o.iteration,
                });
                let id = ev.id.clone();
                match self.append(session_id, at_tail(f.tail, vec![ev])).await? {
                    Appended::Done(_) => id,
                    Appended::Stale => return Ok(true),
                    Appended::Terminated => return Ok(false),
                }
            }
        };
        let end = |result: &str, explanation: String, usage: ModelUsage| {
            NewEvent::new(EventBody::SpanOutcomeEvaluationEnd {
                outcome_evaluation_start_id: start.clone(),
                outcome_id: o.id.clone(),
                iteration: o.iteration,
                result: result.to_owned(),
                explanation,
                usage,
            })
        };
        let grading = self.grade(session_id, &o);
        tokio::pin!(grading);
        let mut beat = tokio::time::interval(self.cfg.outcome_heartbeat);
        beat.tick().await;
        let (result, explanation, usage) = loop {
            tokio::select! {
                v = &mut grading => break v?,
                () = cancel.cancelled() => {
                    let ev = end("interrupted", "The user interrupted the evaluation.".into(), ModelUsage::default());
                    self.append(session_id, events(vec![ev])).await?;
                    return Ok(false);
                }
                _ = beat.tick() => {
                    // A heartbeat tells a client the grading runs, as opposed to being stuck.
                    let ev = NewEvent::new(EventBody::SpanOutcomeEvaluationOngoing {
                        outcome_id: o.id.clone(),
                        iteration: o.iteration,
                    });
                    self.append(session_id, events(vec![ev])).await?;
                }
            }
        };
        self.append(session_id, events(vec![end(&result, explanation, usage)]))
            .await?;
        Ok(true)
    }

    /// The verdict on the agent's work: the rubric's exact checks first, then — when the
    /// rubric has text criteria — the model grader. Returns (result, explanation, usage).
    #[expect(clippy::too_many_lines, reason = "split in issue 15")]
    async fn grade(&self, session_id: &str, o: &Outcome) -> Result<(String, String, ModelUsage)> {
        // The last allowed iteration turns a needs_revision into the final verdict.
        let last = o.iteration + 1 >= o.max_iterations;
        let revise = if last {
            "max_iterations_reached"
        } else {
            "needs_revision"
        };
        let none = ModelUsage::default;
        let mut failures = Vec::new();
        for c in &o.checks {
            match c {
                Check::Command { command } => {
                    let input = serde_json::json!({"command": crate::outcomes::check_command(command), "timeout_ms": 300_000});
                    let out = self
                        .execute(session_id, session_id, &host_call("bash", input))
                        .await;
                    failures.extend(crate::outcomes::command_failure(
                        command,
                        &out.text,
                        out.is_error,
                    ));
                }
                Check::JsonSchema { file, schema } => {
                    // Read through the sandbox, as the agent would: a symlink the agent
                    // planted resolves inside it, never to a host file.
                    if let Err(e) = crate::outcomes::plain_path(file) {
                        failures.push(e);
                        continue;
                    }
                    let out = self
                        .execute(
                            session_id,
                            session_id,
                            &host_call("read", serde_json::json!({"file_path": file})),
                        )
                        .await;
                    if out.is_error {
                        failures.push(out.text);
                    } else {
                        failures.extend(crate::outcomes::content_failure(file, &out.text, schema));
                    }
                }
            }
        }
        if !failures.is_empty() {
            let why = format!("These checks failed:\n- {}", failures.join("\n- "));
            return Ok((revise.to_owned(), why, none()));
        }
        if !o.checks.is_empty() && o.rubric.trim().is_empty() {
            return Ok(("satisfied".into(), "All checks passed.".into(), none()));
        }
        let agent = self.agents.session_agent(session_id).await?;
        let (model, upstream_id) = match self.models.resolve(&agent.spec.model.id) {
            Ok(m) => m,
            Err(e) => {
                return Ok((
                    "failed".into(),
                    format!("The grader model is unavailable: {e}"),
                    none(),
                ));
            }
        };
        let files = self.workspace_view(session_id, o).await;
        let request = Request {
            model: upstream_id,
            system: Some(crate::outcomes::grader_system()),
            messages: vec![agentd_models::Message {
                role: agentd_models::Role::User,
                content: vec![Block::Text {
                    text: crate::outcomes::grader_prompt(o, &files),
                }],
            }],
            tools: vec![],
            max_tokens: 2048,
        };
        let mut attempt = 0;
        let verdict = loop {
            attempt += 1;
            match model.complete(&request, &mut |_| {}).await {
                Err(e) if e.retryable() && attempt < self.cfg.retry.max_attempts => {
                    tokio::time::sleep(self.cfg.retry.delay(attempt, e.retry_after())).await;
                }
                other => break other,
            }
        };
        Ok(match verdict {
            Ok(resp) => {
                let text: String = resp
                    .content
                    .iter()
                    .filter_map(|b| match b {
                        Block::Text { text } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect();
                let (r, x) = crate::outcomes::parse_verdict(&text);
                let r = if r == "needs_revision" {
                    revise.to_owned()
                } else {
                    r
                };
                (r, x, resp.usage)
            }
            Err(e) => (
                "failed".to_owned(),
                format!("The grader could not be reached: {e}"),
                none(),
            ),
        })
    }

    /// The workspace as the grader sees it: a listing, and the files the outcome or its rubric
    /// name — read through the sandbox, so nothing outside the workspace can be shown.
    async fn workspace_view(&self, session_id: &str, o: &Outcome) -> String {
        use crate::outcomes::{MAX_FILE, MAX_LISTED, MAX_SHOWN, listable, mentioned};
        if self.sandboxes.is_none() {
            return String::new();
        }
        let list = self
            .execute(
                session_id,
                session_id,
                &host_call("glob", serde_json::json!({"pattern": "**/*"})),
            )
            .await;
        if list.is_error {
            return String::new();
        }
        let files: Vec<&str> = list
            .text
            .lines()
            .filter_map(|l| l.strip_prefix("/workspace/"))
            .filter(|rel| listable(rel))
            .take(MAX_LISTED)
            .collect();
        if files.is_empty() {
            return String::new();
        }
        let mut shown = String::new();
        for rel in files.iter().filter(|rel| mentioned(o, rel)).take(MAX_SHOWN) {
            let out = self
                .execute(
                    session_id,
                    session_id,
                    &host_call("read", serde_json::json!({"file_path": rel})),
                )
                .await;
            if !out.is_error && out.text.len() <= MAX_FILE {
                shown.push_str(&format!("--- {rel} ---\n{}\n", out.text));
            }
        }
        format!("Files in the workspace:\n{}\n\n{shown}\n", files.join("\n"))
    }

    /// Replace older turns of the model's context with a summary the model writes. Returns
    /// whether a compaction was logged; without a clean place to cut, or if the summary cannot
    /// be made, the context stays as it is.
    async fn compact(
        &self,
        session_id: &str,
        f: &Fold,
        c: Compaction,
        cancel: &CancellationToken,
    ) -> Result<bool> {
        let limit = f.messages.len().saturating_sub(c.keep_messages);
        let Some(cut) = (1..=limit)
            .rev()
            .find(|i| f.messages[*i].role == agentd_models::Role::Assistant)
        else {
            return Ok(false);
        };
        let agent = self.agents.session_agent(session_id).await?;
        let Ok((model, upstream_id)) = self.models.resolve(&agent.spec.model.id) else {
            return Ok(false);
        };
        let mut messages = f.messages[..cut].to_vec();
        let ask = Block::Text {
            text: crate::compaction::INSTRUCTION.into(),
        };
        match messages.last_mut() {
            Some(m) if m.role == agentd_models::Role::User => m.content.push(ask),
            _ => messages.push(agentd_models::Message {
                role: agentd_models::Role::User,
                content: vec![ask],
            }),
        }
        let request = Request {
            model: upstream_id,
            system: Some(crate::compaction::SYSTEM.into()),
            messages,
            tools: vec![],
            max_tokens: 4096,
        };
        let mut ignore = |_| {};
        let reply = tokio::select! {
            r = model.complete(&request, &mut ignore) => r,
            // An interrupt wins; the wake ends and the context stays whole.
            () = cancel.cancelled() => return Ok(false),
        };
        let (summary, usage) = match reply {
            Ok(resp) => (
                resp.content
                    .iter()
                    .filter_map(|b| match b {
                        Block::Text { text } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect::<String>(),
                resp.usage,
            ),
            Err(e) => {
                tracing::warn!(session = session_id, error = %e, "compaction failed; the context stays whole");
                return Ok(false);
            }
        };
        if summary.trim().is_empty() {
            return Ok(false);
        }
        let ev = NewEvent::new(EventBody::AgentThreadContextCompacted {}).with_private(
            Private::Compaction {
                summary,
                upto: f.message_starts[cut],
                usage,
            },
        );
        tracing::info!(
            session = session_id,
            prompt_tokens = f.prompt_tokens,
            "compacted the context"
        );
        Ok(matches!(
            self.append(session_id, at_tail(f.tail, vec![ev])).await?,
            Appended::Done(_)
        ))
    }

    /// Answer built-in tool calls in order. Each call is logged as started before it runs, and
    /// its result right after, so a restart never runs a call twice. Returns false when
    /// interrupted.
    /// `workspace` is the session whose workspace the calls run over.
    async fn run_tools(
        &self,
        session_id: &str,
        workspace: &str,
        f: &Fold,
        work: Vec<ToolWork>,
        cancel: &CancellationToken,
    ) -> Result<bool> {
        let mut tail = f.tail;
        let mut started = f.children.len();
        for w in work {
            if crate::threads::TOOLS.contains(&w.name.as_str()) && w.action == ToolAction::Run {
                // The call's whole effect and its result land in one append.
                let (events, wake) = match self.plan_thread_call(session_id, f, &w, started).await?
                {
                    Ok(p) => (p.events, Some(p.wake)),
                    Err(why) => (vec![tool_result(&w.id, Output::error(why))], None),
                };
                let here = events.iter().filter(|e| e.to.is_none()).count() as u64;
                match self.append(session_id, at_tail(tail, events)).await? {
                    Appended::Done(h) => tail = h.last_seq,
                    Appended::Stale => return Ok(true),
                    Appended::Terminated => return Ok(false),
                }
                debug_assert!(here > 0);
                if let Some(t) = wake {
                    if w.name == crate::threads::START {
                        started += 1;
                    }
                    self.wake_log(&t);
                }
                continue;
            }
            // Each call goes ahead only if nothing was logged since the fold that planned it;
            // otherwise the caller folds again (a user message may have closed the call).
            let output = match w.action {
                ToolAction::Deny(why) => Output::error(why),
                ToolAction::Interrupted => Output::error(
                    "This call was interrupted: agentd stopped while it ran, so it may have partly run. \
                     Check the state it would have changed before trying it again.",
                ),
                ToolAction::Run => {
                    let started = NewEvent::new(EventBody::ToolStarted {
                        tool_use_id: w.id.clone(),
                    });
                    match self
                        .append(session_id, at_tail(tail, vec![started]))
                        .await?
                    {
                        Appended::Done(h) => tail = h.last_seq,
                        Appended::Stale => return Ok(true),
                        Appended::Terminated => return Ok(false),
                    }
                    tokio::select! {
                        o = self.execute(session_id, workspace, &w) => o,
                        () = cancel.cancelled() => {
                            // Stopping the sandbox is what stops the command.
                            if let Some(sb) = &self.sandboxes {
                                sb.release(session_id).await;
                            }
                            let o = Output::error("Interrupted by the user; the command was stopped.");
                            self.append(session_id, events(vec![tool_result(&w.id, o)])).await?;
                            return Ok(false);
                        }
                    }
                }
            };
            // A call that ran is answered whatever arrived meanwhile; then fold again if so.
            match self
                .append(session_id, events(vec![tool_result(&w.id, output)]))
                .await?
            {
                Appended::Done(h) if h.last_seq == tail + 1 => tail = h.last_seq,
                Appended::Done(_) | Appended::Stale => return Ok(true),
                Appended::Terminated => return Ok(false),
            }
        }
        Ok(true)
    }

    /// Run a built-in call of log `session_id` (a session's, or a worker thread's) in its
    /// sandbox, which mounts the workspace of session `workspace`.
    #[expect(clippy::too_many_lines, reason = "split in issue 15")]
    async fn execute(&self, session_id: &str, workspace: &str, w: &ToolWork) -> Output {
        let env = match self.agents.session_environment(workspace).await {
            Ok(env) => env,
            Err(e) => {
                return Output::error(format!("Cannot read the session's environment: {e}"));
            }
        };
        let policy = policy(&env);
        if w.name == "web_fetch" {
            return match agentd_hands::tools::parse::<WebFetchInput>("web_fetch", &w.input) {
                Ok(i) => match agentd_egress::fetch(&i.url, &policy, WEB_FETCH_LIMIT).await {
                    Ok(text) => Output::ok(text),
                    Err(e) => Output::error(format!("web_fetch: {e}")),
                },
                Err(e) => Output::error(e),
            };
        }
        if w.name == "web_search" {
            let Some(backend) = &self.cfg.web_search else {
                return Output::error(
                    "web_search is not available: no search backend is configured on this agentd. Use web_fetch with a known URL.",
                );
            };
            return match agentd_hands::tools::parse::<WebSearchInput>("web_search", &w.input) {
                Ok(i) => match agentd_egress::search(backend, &i.query).await {
                    Ok(text) => Output::ok(text),
                    Err(e) => Output::error(format!("web_search: {e}")),
                },
                Err(e) => Output::error(e),
            };
        }
        if !SANDBOX_TOOLS.contains(&w.name.as_str()) {
            return Output::error(format!(
                "The tool {:?} is not available in this agentd.",
                w.name
            ));
        }
        let Some(sandboxes) = &self.sandboxes else {
            return Output::error(
                "This agentd runs without sandboxes, so built-in tools are unavailable.",
            );
        };
        match crate::packages::missing_apt(&env).await {
            Ok(m) if m.is_empty() => {}
            Ok(m) => {
                return Output::error(format!(
                    "The environment needs apt packages this host lacks: {}. Sandboxes use the host's system packages; the operator installs them with `apt-get install {}`.",
                    m.join(", "),
                    m.join(" ")
                ));
            }
            Err(e) => return Output::error(e),
        }
        let sb = match sandboxes
            .get(
                session_id,
                workspace,
                policy,
                crate::packages::setup_script(&env),
            )
            .await
        {
            Ok(sb) => sb,
            Err(e) => {
                return Output::error(format!("Could not start a sandbox for this tool: {e}"));
            }
        };
        let quota = sandboxes.disk_quota();
        let mib = |b: u64| b >> 20;
        if let Some(q) = quota
            && matches!(w.name.as_str(), "write" | "edit")
        {
            let used = sandboxes.disk_usage(workspace).await;
            if used > q {
                return Output::error(format!(
                    "{}: refused: the workspace holds {} MiB, over its {} MiB limit. Delete files (with bash) first.",
                    w.name,
                    mib(used),
                    mib(q)
                ));
            }
        }
        let mut out = sb.execute(&w.name, &w.input).await;
        sandboxes.done(session_id);
        if !sb.alive() {
            sandboxes.release(session_id).await;
        }
        if let Some(q) = quota
            && matches!(w.name.as_str(), "bash" | "write" | "edit")
        {
            let used = sandboxes.disk_usage(workspace).await;
            if used > q {
                out.text.push_str(&format!(
                    "\n[the workspace now holds {} MiB, over its {} MiB limit: write and edit are refused until files are deleted]",
                    mib(used),
                    mib(q)
                ));
            }
        }
        out
    }

    /// The events a `start_thread` or `send_to_thread` call logs, or the error the model gets.
    async fn plan_thread_call(
        &self,
        session_id: &str,
        f: &Fold,
        w: &ToolWork,
        started: usize,
    ) -> Result<std::result::Result<crate::threads::Planned, String>> {
        if w.name == crate::threads::START {
            let agent = self.agents.session_agent(session_id).await?;
            let roster = roster(&agent);
            return Ok(crate::threads::start(
                &w.id,
                &w.input,
                &roster,
                session_id,
                started,
                self.cfg.max_threads,
            ));
        }
        let mut archived = Vec::new();
        for c in &f.children {
            if let Some(t) = self.agents.thread(&c.id).await?
                && t.archived
            {
                archived.push(t.id);
            }
        }
        Ok(crate::threads::send(&w.id, &w.input, f, session_id, |id| {
            archived.iter().any(|a| a == id)
        }))
    }

    /// Append a turn's outcome, and in the same transaction rest the session with `rest` if
    /// nothing was logged since `tail` (otherwise the next fold decides).
    async fn finish(
        &self,
        session_id: &str,
        tail: u64,
        mut evs: Vec<NewEvent>,
        rest: Option<StopReason>,
    ) -> Result<()> {
        let guard: agentd_session::Guard = Box::new(move |head: &Head| {
            if head.status == SessionStatus::Terminated {
                return Err(Refusal::Terminated);
            }
            if let Some(rest) = rest.filter(|_| head.last_seq == tail) {
                evs.push(NewEvent::new(EventBody::SessionStatusIdle {
                    stop_reason: rest,
                    stop_details: None,
                }));
            }
            Ok(evs)
        });
        self.append(session_id, guard).await?;
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

/// Mints the ids of events still streaming and publishes their previews, so the final events
/// carry the ids the previews named.
struct PreviewIds<'a> {
    session_id: &'a str,
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
    fn new(session_id: &'a str, previews: &'a Previews, after: u64) -> Self {
        PreviewIds {
            session_id,
            previews,
            publish: previews.wanted(session_id),
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
            self.previews.publish(self.session_id, self.after, p);
        }
    }

    fn id_for(&self, index: u32) -> String {
        self.ids
            .get(&index)
            .cloned()
            .unwrap_or_else(|| ids::new(Kind::Event))
    }
}

/// The roster a session's agent may start threads with.
fn roster(agent: &agentd_wire::session::SessionAgent) -> Vec<&agentd_wire::session::SessionAgent> {
    agent
        .spec
        .multiagent
        .iter()
        .flat_map(|m| m.members())
        .filter_map(|m| match m {
            agentd_wire::agent::RosterMember::Pinned(a) => Some(a.as_ref()),
            // A session's roster is pinned whole when it starts.
            agentd_wire::agent::RosterMember::Ref(_)
            | agentd_wire::agent::RosterMember::Myself(_) => None,
        })
        .collect()
}

/// The tools an agent version offers, split by who runs them.
struct Toolbox {
    custom: Vec<ToolDef>,
    /// A coordinator's thread tools.
    threads: Vec<ToolDef>,
    /// Enabled built-in tools with the permission each call gets.
    builtin: Vec<(String, Permission)>,
    /// Enabled but not offered, because this agentd cannot run them.
    unavailable: Vec<String>,
}

impl Toolbox {
    fn of(tools: &[Tool], can_search: bool) -> Toolbox {
        let mut tb = Toolbox {
            custom: Vec::new(),
            threads: Vec::new(),
            builtin: Vec::new(),
            unavailable: Vec::new(),
        };
        for t in tools {
            match t {
                Tool::Custom(c) => tb.custom.push(ToolDef {
                    name: c.name.clone(),
                    description: c.description.clone(),
                    input_schema: serde_json::to_value(&c.input_schema).unwrap_or_default(),
                }),
                Tool::AgentToolset20260401(set) => {
                    for name in SANDBOX_TOOLS.iter().chain(HOST_TOOLS) {
                        let cfg = set.configs.iter().find(|c| c.name == *name);
                        let enabled = cfg.map_or(set.default_config.enabled, |c| c.enabled);
                        let policy = cfg.map_or(set.default_config.permission_policy, |c| {
                            c.permission_policy
                        });
                        if enabled && *name == "web_search" && !can_search {
                            // Enabled but without a backend: the call gets an error that says so.
                            tb.unavailable.push((*name).to_owned());
                        } else if enabled {
                            let permission = match policy {
                                PermissionPolicy::AlwaysAllow => Permission::Allow,
                                // No classifier decides `auto` yet, so the user does.
                                PermissionPolicy::AlwaysAsk | PermissionPolicy::Auto => {
                                    Permission::Ask
                                }
                            };
                            tb.builtin.push(((*name).to_owned(), permission));
                        }
                    }
                }
                Tool::McpToolset(_) => {}
            }
        }
        tb
    }

    /// A coordinator's primary thread also gets the tools that start and message threads.
    fn add_thread_tools(&mut self, agent: &agentd_wire::session::SessionAgent) {
        let roster = roster(agent);
        if roster.is_empty() {
            return;
        }
        self.threads = crate::threads::definitions(&roster);
        for t in &self.threads {
            self.builtin.push((t.name.clone(), Permission::Allow));
        }
    }

    fn permission(&self, name: &str) -> Option<Permission> {
        let unavailable = self.unavailable.iter().any(|n| n == name);
        self.builtin
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .or(unavailable.then_some(Permission::Allow))
    }
}

fn tool_defs(tb: &Toolbox) -> Vec<ToolDef> {
    let builtin = tb.builtin.iter().filter_map(|(name, _)| {
        agentd_hands::tools::definition(name).map(|(description, input_schema)| ToolDef {
            name: name.clone(),
            description: description.to_owned(),
            input_schema,
        })
    });
    builtin
        .chain(tb.threads.iter().cloned())
        .chain(tb.custom.iter().cloned())
        .collect()
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
            Block::ToolUse { name, input, .. } => {
                let input = match input {
                    serde_json::Value::Object(m) => m,
                    other => {
                        let mut m = serde_json::Map::new();
                        m.insert("value".into(), other);
                        m
                    }
                };
                let e = if tb.custom.iter().any(|c| c.name == name) {
                    calls.waiting.push(String::new());
                    NewEvent::new(EventBody::AgentCustomToolUse {
                        name,
                        input,
                        session_thread_id: None,
                    })
                } else {
                    // Built-in, or unknown (denied, so the model hears why).
                    let permission = tb.permission(&name).unwrap_or(Permission::Deny);
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
                out.push(e);
            }
            Block::Image { .. } | Block::Document { .. } | Block::ToolResult { .. } => {}
        }
        text_open = false;
    }
    (out, calls)
}

/// The egress policy an environment asks for.
fn policy(env: &EnvironmentConfig) -> agentd_egress::Policy {
    match env {
        EnvironmentConfig::Cloud {
            networking: Networking::Unrestricted,
            ..
        } => agentd_egress::Policy::unrestricted(),
        EnvironmentConfig::Cloud {
            networking:
                Networking::Limited {
                    allowed_hosts,
                    allow_package_managers,
                    ..
                },
            ..
        } => agentd_egress::Policy::limited(allowed_hosts, *allow_package_managers),
        EnvironmentConfig::SelfHosted {} => agentd_egress::Policy::none(),
    }
}

/// A call the harness itself makes in the sandbox (outcome checks, the grader's view).
fn host_call(name: &str, input: serde_json::Value) -> ToolWork {
    ToolWork {
        id: String::new(),
        name: name.into(),
        input,
        action: ToolAction::Run,
    }
}

fn tool_result(tool_use_id: &str, o: Output) -> NewEvent {
    let mut content = vec![ContentBlock::text(o.text)];
    if let Some(img) = o.image {
        content.push(ContentBlock::Image {
            source: serde_json::json!({"type": "base64", "media_type": img.media_type, "data": img.data}),
        });
    }
    NewEvent::new(EventBody::AgentToolResult {
        tool_use_id: tool_use_id.to_owned(),
        content: Some(content),
        is_error: Some(o.is_error),
    })
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
