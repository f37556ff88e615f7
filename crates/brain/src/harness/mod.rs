//! `wake(log)`: fold the log, call the model when the log says so, append the outcome.
//!
//! Every step is logged before it is relied on. A model request is bracketed by
//! `span.model_request_start` (logged before the call) and one transaction holding the
//! response, the span's end, the usage and — when nothing arrived meanwhile — the idle status.
//! A crash mid-request leaves an open span that the next wake makes again; the half-streamed
//! response was never logged, so the user sees it once.
//!
//! One file per phase of a wake: `turn` (a model request and the events of its response),
//! `tools` (built-in and thread tool calls), `evaluation` (grading an outcome), `compaction`
//! (summarising older turns), and `retry` (the backoff all three model calls share).

mod compaction;
mod evaluation;
mod judge;
mod mcp;
mod retry;
mod tools;
mod turn;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use agentd_models::Registry;
use agentd_session::{
    Error as LogError, Head, NewEvent, Refusal, SessionLog, StoredEvent, at_tail,
};
use agentd_wire::{EventBody, SessionStatus, StopReason};

use crate::context::{Next, fold};
use crate::sandboxes::Sandboxes;
use crate::{Catalog, Error, Previews, Result};

use compaction::Compacted;

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
    /// Non-public ranges the operator lets environments reach (`--egress-allow-private`).
    pub egress_private: Vec<agentd_egress::Cidr>,
    /// List prices of model calls: every call's cost is logged with it.
    pub prices: agentd_models::Prices,
    /// The sessions' secrets (repository tokens, environment variables) from the vaults;
    /// without it a repository with a token is a tool error and no secret is offered.
    pub secrets: Option<std::sync::Arc<dyn crate::repositories::SessionSecrets>>,
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
            egress_private: vec![],
            prices: agentd_models::Prices::default(),
            secrets: None,
        }
    }
}

#[derive(Clone)]
pub struct Harness {
    log: Arc<dyn SessionLog>,
    catalog: Arc<dyn Catalog>,
    models: Arc<Registry>,
    previews: Previews,
    cfg: Arc<HarnessConfig>,
    sandboxes: Option<Arc<Sandboxes>>,
    /// The MCP client that lists and calls the agents' MCP tools.
    mcp: Arc<agentd_mcp::Mcp>,
    /// Where to ask for another log to be woken (a thread given work, a parent given a reply).
    wakeups: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// The lease owner this harness runs for (`lease::key`), when a runner holding leases
    /// drives it: its appends are fenced against another owner.
    owner: Option<u64>,
}

/// How a wake's attempt to append ended.
enum Appended {
    Done(Head),
    /// The log moved on since the fold; fold again.
    Stale,
    Terminated,
}

/// Whether a wake goes on after a phase, or ends here (an interrupt, a terminated session).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Fold again and do what the log asks next.
    Continue,
    /// End the wake; whoever fires the next one logs the rest.
    Stop,
}

impl Harness {
    pub fn new(
        log: Arc<dyn SessionLog>,
        catalog: Arc<dyn Catalog>,
        models: Arc<Registry>,
        previews: Previews,
        cfg: HarnessConfig,
    ) -> Self {
        Harness {
            log,
            catalog,
            models,
            previews,
            cfg: Arc::new(cfg),
            sandboxes: None,
            mcp: Arc::new(agentd_mcp::Mcp::new(
                Arc::new(agentd_mcp::NoAuth),
                agentd_mcp::Limits::default(),
            )),
            wakeups: None,
            owner: None,
        }
    }

    /// Send the ids of logs this harness gives work to here, for a scheduler to wake them.
    pub fn with_wakeups(mut self, tx: tokio::sync::mpsc::UnboundedSender<String>) -> Self {
        self.wakeups = Some(tx);
        self
    }

    /// Fence every append against a lease held by anyone but `owner`.
    pub fn with_owner(mut self, owner: &str) -> Self {
        self.owner = Some(agentd_session::lease::key(owner));
        self
    }

    fn wake_log(&self, log_id: &str) {
        if let Some(tx) = &self.wakeups {
            let _ = tx.send(log_id.to_owned());
        }
    }

    /// Run built-in tools in these sandboxes; without them such calls fail with an error the
    /// model sees.
    /// Use `mcp` (its credentials, its limits) for the agents' MCP servers.
    pub fn with_mcp(mut self, mcp: Arc<agentd_mcp::Mcp>) -> Self {
        self.mcp = mcp;
        self
    }

    pub fn with_sandboxes(mut self, sandboxes: Arc<Sandboxes>) -> Self {
        self.sandboxes = Some(sandboxes);
        self
    }

    /// Why an environment's `allowed_hosts` entry could never be reached from here (it
    /// names this host, its link, or private space the operator did not open), if it could not.
    pub fn unreachable_host(&self, entry: &str) -> Option<String> {
        agentd_egress::unreachable_entry(entry, &self.cfg.egress_private)
    }

    /// The MCP client: an archived or deleted session's connections are closed through it.
    pub fn mcp(&self) -> &Arc<agentd_mcp::Mcp> {
        &self.mcp
    }

    pub fn sandboxes(&self) -> Option<&Arc<Sandboxes>> {
        self.sandboxes.as_ref()
    }

    /// Collect what session `session_id`'s agent left in its outputs directory into the Files
    /// API (`crate::outputs`). Run before the session rests and when it is archived; safe to
    /// run again at any time.
    pub async fn collect_outputs(&self, session_id: &str) -> Result<()> {
        if let Some(sb) = &self.sandboxes {
            crate::outputs::collect(self.catalog.as_ref(), session_id, &sb.outputs(session_id))
                .await?;
        }
        Ok(())
    }

    pub fn log(&self) -> &Arc<dyn SessionLog> {
        &self.log
    }

    /// Bring the log to rest: run model turns until the log asks for nothing more.
    /// Returns early, without resting, when `cancel` fires (an interrupt); the caller wakes
    /// the log again to log the rest.
    pub async fn wake(&self, log_id: &str, cancel: &CancellationToken) -> Result<()> {
        let mut log: Vec<StoredEvent> = Vec::new();
        // A child thread reports its status and replies to the thread that started it.
        let me = self.catalog.thread(log_id).await?;
        // A worker's tools run over its session's workspace.
        let workspace = me.as_ref().map_or(log_id, |t| t.session_id.as_str());
        let mut first = true;
        loop {
            self.catch_up(log_id, &mut log).await?;
            let f = fold(&log);
            if std::mem::take(&mut first) {
                // Threads this one waits on may have been cut short by a restart before they
                // began: make sure each is being worked on (a wake with nothing to do is cheap).
                for c in f.busy_children() {
                    self.wake_log(&c.id);
                }
            }
            let flow = match f.next.clone() {
                Next::Rest(reason) => {
                    // Log a rest when the log was working, or when what it waits for
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
                        None => {
                            // The session rests: what its agent delivered is listed first.
                            self.collect_outputs(log_id).await?;
                            Vec::new()
                        }
                    };
                    batch.push(NewEvent::new(EventBody::SessionStatusIdle {
                        stop_details: turn::stop_details(&reason),
                        stop_reason: reason,
                    }));
                    match self.append(log_id, at_tail(f.tail, batch)).await? {
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
                _ if cancel.is_cancelled() => return Ok(()),
                Next::Evaluate(outcome) => self.evaluate(log_id, &f, outcome, cancel).await?,
                Next::RunTools(work) => self.run_tools(log_id, workspace, &f, work, cancel).await?,
                Next::CallModel { open_span } => {
                    if open_span.is_none()
                        && let Some(c) = self.cfg.compaction
                        && f.prompt_tokens >= c.at_tokens
                        && self.compact(log_id, &f, c, cancel).await? == Compacted::Logged
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
                        match self.append(log_id, at_tail(f.tail, batch)).await? {
                            Appended::Done(h) => tail = h.last_seq,
                            Appended::Stale => continue,
                            Appended::Terminated => return Ok(()),
                        }
                    }
                    self.turn(log_id, me.as_ref(), &f, span, tail, cancel)
                        .await?
                }
            };
            if flow == Flow::Stop {
                return Ok(());
            }
        }
    }

    /// Read what was appended since `log`'s last event.
    async fn catch_up(&self, log_id: &str, log: &mut Vec<StoredEvent>) -> Result<()> {
        loop {
            let after = log.last().map_or(0, |e| e.seq);
            let page = self.log.read(log_id, after, 1000).await?;
            let n = page.len();
            log.extend(page);
            if n < 1000 {
                return Ok(());
            }
        }
    }

    /// What `usage` cost on `model` (an agent's model id) at the configured list prices,
    /// picodollars.
    fn cost(&self, model: &str, usage: &agentd_wire::usage::ModelUsage) -> u64 {
        self.cfg.prices.cost(model, usage)
    }

    async fn append(&self, log_id: &str, guard: agentd_session::Guard) -> Result<Appended> {
        let guard = match self.owner {
            Some(owner) => agentd_session::lease::fenced(owner, guard),
            None => guard,
        };
        match self.log.append(log_id, guard).await {
            Ok((head, _)) => Ok(Appended::Done(head)),
            Err(LogError::Refused(Refusal::Fenced)) => Err(Error::Fenced(log_id.to_owned())),
            Err(LogError::Refused(Refusal::Stale { .. })) => Ok(Appended::Stale),
            Err(LogError::Refused(Refusal::Terminated)) => Ok(Appended::Terminated),
            Err(LogError::NotFound(id)) => Err(Error::SessionNotFound(id)),
            Err(e) => Err(e.into()),
        }
    }
}
