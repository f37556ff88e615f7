//! Tool calls: which tools an agent is offered and with what permission, and how the harness
//! answers the built-in ones — in the sandbox, on the host (`web_fetch`, `web_search`), or, for
//! a coordinator's thread tools, by logging the thread's creation or message — and the MCP ones,
//! through the MCP client (`mcp`), under the same started/result bookkeeping.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use agentd_hands::tools::{
    HOST_TOOLS, SANDBOX_TOOLS, WEB_FETCH_LIMIT, WebFetchInput, WebSearchInput,
};
use agentd_hands::{Output, Sandbox};
use agentd_models::ToolDef;
use agentd_session::catalog::WorkQueued;
use agentd_session::{NewEvent, at_tail, events};
use agentd_wire::agent::{PermissionPolicy, SessionAgent, Tool};
use agentd_wire::environment::{EnvironmentConfig, Networking};
use agentd_wire::event::Permission;
use agentd_wire::{ContentBlock, EventBody};

use super::{Appended, Flow, Harness};
use crate::Result;
use crate::context::{Fold, ToolAction, ToolWork};
use crate::sandboxes::Sandboxes;
use crate::tool_name::ToolName;

/// A worker thread's sandbox call on a `self_hosted` environment.
const THREAD_ON_WORKER: &str = "This environment's tools run on its self-hosted workers, which serve the session's primary agent only: a worker thread cannot run sandbox tools here. Ask the coordinator to run the command.";

/// A sandbox call of an archived `self_hosted` session.
const ARCHIVED_ON_WORKER: &str = "The session is archived: its environment's workers were asked to stop, so this call will not run.";

/// How long one outcome check command may run.
const CHECK_TIMEOUT_MS: u64 = 300_000;

impl Harness {
    /// Answer built-in tool calls in order. Each call is logged as started before it runs, and
    /// its result right after, so a restart never runs a call twice.
    /// `workspace` is the session whose workspace the calls run over.
    pub(super) async fn run_tools(
        &self,
        log_id: &str,
        workspace: &str,
        f: &Fold,
        work: Vec<ToolWork>,
        cancel: &CancellationToken,
    ) -> Result<Flow> {
        let mut tail = f.tail;
        let mut started = f.children.len();
        // A self_hosted environment's worker runs the sandbox tools: such a call stays open
        // in the log until the worker's `user.tool_result` closes it. A storage failure is an
        // error the wake retries: guessing "cloud" would run a worker's call here as well. (A
        // missing environment is not self_hosted; each call then says it cannot be read.)
        let self_hosted = match self.catalog.session_environment(workspace).await {
            Ok(env) => matches!(env, EnvironmentConfig::SelfHosted {}),
            Err(agentd_session::catalog::Error::NotFound(_)) => false,
            Err(e) => return Err(e.into()),
        };
        let mut remote = Vec::new();
        for mut w in work {
            if self_hosted && w.action == ToolAction::Run && w.name.in_sandbox() {
                if log_id == workspace {
                    remote.push(w);
                    continue;
                }
                // Workers serve the session's own log; a worker thread's call would wait
                // for an answer that never comes.
                w.action = ToolAction::Deny(THREAD_ON_WORKER.to_owned());
            }
            if w.name.is_thread_tool() && w.action == ToolAction::Run {
                // The call's whole effect and its result land in one append.
                let (events, wake) = match self.plan_thread_call(log_id, f, &w, started).await? {
                    Ok(p) => (p.events, Some(p.wake)),
                    Err(why) => (vec![tool_result(&w, blocks(Output::error(why)))], None),
                };
                let here = events.iter().filter(|e| e.to.is_none()).count() as u64;
                match self.append(log_id, at_tail(tail, events)).await? {
                    Appended::Done(h) => tail = h.last_seq,
                    Appended::Stale => return Ok(Flow::Continue),
                    Appended::Terminated => return Ok(Flow::Stop),
                }
                debug_assert!(here > 0);
                if let Some(t) = wake {
                    if w.name == ToolName::StartThread {
                        started += 1;
                    }
                    self.wake_log(&t);
                }
                continue;
            }
            // Each call goes ahead only if nothing was logged since the fold that planned it;
            // otherwise the caller folds again (a user message may have closed the call).
            let lost = matches!(w.action, ToolAction::Run)
                && self.workspace_lost(log_id, workspace, f, &w);
            let output = match &w.action {
                ToolAction::Deny(why) => blocks(Output::error(why.clone())),
                ToolAction::Interrupted => blocks(Output::error(
                    "This call was interrupted: agentd stopped while it ran, so it may have partly run. \
                     Check the state it would have changed before trying it again.",
                )),
                ToolAction::Run if lost => blocks(Output::error(WORKSPACE_LOST)),
                ToolAction::Run => {
                    let started = NewEvent::new(EventBody::ToolStarted {
                        tool_use_id: w.id.clone(),
                    });
                    match self.append(log_id, at_tail(tail, vec![started])).await? {
                        Appended::Done(h) => tail = h.last_seq,
                        Appended::Stale => return Ok(Flow::Continue),
                        Appended::Terminated => return Ok(Flow::Stop),
                    }
                    tokio::select! {
                        o = self.run_one(log_id, workspace, &w) => o,
                        () = cancel.cancelled() => {
                            // Stopping the sandbox is what stops the command; an MCP call is
                            // abandoned by dropping its request.
                            if let Some(sb) = &self.sandboxes {
                                sb.release(log_id).await;
                            }
                            let o = Output::error(if matches!(w.name, ToolName::Mcp { .. }) {
                                "Interrupted by the user; agentd abandoned the call, which the MCP server may have partly run."
                            } else {
                                "Interrupted by the user; the command was stopped."
                            });
                            self.append(log_id, events(vec![tool_result(&w, blocks(o))])).await?;
                            return Ok(Flow::Stop);
                        }
                    }
                }
            };
            // A call that ran is answered whatever arrived meanwhile; then fold again if so.
            match self
                .append(log_id, events(vec![tool_result(&w, output)]))
                .await?
            {
                Appended::Done(h) if h.last_seq == tail + 1 => tail = h.last_seq,
                Appended::Done(_) | Appended::Stale => return Ok(Flow::Continue),
                Appended::Terminated => return Ok(Flow::Stop),
            }
            // Only once the model has been told: a crash before this tells it again.
            if lost
                && let Some(sb) = &self.sandboxes
                && let Err(e) = sb.recreate_workspace(workspace)
            {
                tracing::warn!(session = workspace, error = %e, "cannot make a fresh workspace");
            }
        }
        if !remote.is_empty() {
            return self.hand_to_worker(log_id, &remote).await;
        }
        Ok(Flow::Continue)
    }

    /// Where a cloud session provisions its sandbox, a self-hosted one makes sure a worker will
    /// come for `remote`: the item is durable before the wake ends, and the wake ends without
    /// waiting (the worker's answer wakes the log again).
    async fn hand_to_worker(&self, log_id: &str, remote: &[ToolWork]) -> Result<Flow> {
        match self.catalog.queue_session_work(log_id).await? {
            WorkQueued::Queued | WorkQueued::Live => Ok(Flow::Stop),
            // No worker will come: the model hears so instead of waiting forever.
            WorkQueued::Archived => {
                let answers = remote
                    .iter()
                    .map(|w| tool_result(w, blocks(Output::error(ARCHIVED_ON_WORKER))))
                    .collect();
                match self.append(log_id, events(answers)).await? {
                    Appended::Terminated => Ok(Flow::Stop),
                    Appended::Done(_) | Appended::Stale => Ok(Flow::Continue),
                }
            }
        }
    }

    /// Run call `w`: an MCP tool through the MCP client, a built-in one as `execute` does.
    async fn run_one(
        &self,
        log_id: &str,
        workspace: &str,
        w: &ToolWork,
    ) -> (Vec<ContentBlock>, bool) {
        if matches!(w.name, ToolName::Mcp { .. }) {
            return self.call_mcp(log_id, workspace, w).await;
        }
        blocks(self.execute(log_id, workspace, w).await)
    }

    /// Whether call `w` would run over a workspace this host never had, though the log ran
    /// sandbox calls before: the session moved here from a host this one shares no
    /// workspace root with.
    fn workspace_lost(&self, log_id: &str, workspace: &str, f: &Fold, w: &ToolWork) -> bool {
        f.used_sandbox
            && w.name.in_sandbox()
            && self
                .sandboxes
                .as_ref()
                .is_some_and(|sb| sb.workspace_missing(log_id, workspace))
    }

    /// Run a built-in call of log `log_id` (a session's, or a worker thread's) in its
    /// sandbox, which mounts the workspace of session `workspace`.
    pub(super) async fn execute(&self, log_id: &str, workspace: &str, w: &ToolWork) -> Output {
        let env = match self.catalog.session_environment(workspace).await {
            Ok(env) => env,
            Err(e) => {
                return Output::error(format!("Cannot read the session's environment: {e}"));
            }
        };
        let policy = policy(&env, &self.cfg.egress_private);
        if let Some(out) = self.outside_sandbox(w, &policy).await {
            return out;
        }
        let (sandboxes, sb) = match self.sandbox(log_id, workspace, &env, policy).await {
            Ok(s) => s,
            Err(out) => return out,
        };
        let quota = sandboxes.disk_quota();
        let mib = |b: u64| b >> 20;
        if let Some(q) = quota
            && matches!(w.name, ToolName::Write | ToolName::Edit)
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
        let mut out = sb.execute(w.name.as_str(), &w.input).await;
        sandboxes.done(log_id);
        if !sb.alive() {
            sandboxes.release(log_id).await;
        }
        if let Some(q) = quota
            && matches!(w.name, ToolName::Bash | ToolName::Write | ToolName::Edit)
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

    /// The sandbox of log `log_id` over session `workspace`'s files, provisioned if need be;
    /// or the error output that says why there is none.
    async fn sandbox(
        &self,
        log_id: &str,
        workspace: &str,
        env: &EnvironmentConfig,
        policy: agentd_egress::Policy,
    ) -> std::result::Result<(&Arc<Sandboxes>, Arc<dyn Sandbox>), Output> {
        let Some(sandboxes) = &self.sandboxes else {
            return Err(Output::error(
                "This agentd runs without sandboxes, so built-in tools are unavailable.",
            ));
        };
        match crate::packages::missing_apt(env).await {
            Ok(m) if m.is_empty() => {}
            Ok(m) => {
                return Err(Output::error(format!(
                    "The environment needs apt packages this host lacks: {}. Sandboxes use the host's system packages; the operator installs them with `apt-get install {}`.",
                    m.join(", "),
                    m.join(" ")
                )));
            }
            Err(e) => return Err(Output::error(e)),
        }
        // The session's resources are read only when a sandbox is made: a call that reuses
        // one reads nothing, and nothing is read before the first tool call.
        let live = sandboxes.has_live(log_id, &policy);
        let mounts = if live {
            agentd_session::catalog::Mounts::default()
        } else {
            match self.catalog.session_mounts(workspace).await {
                Ok(m) => m,
                Err(e) => {
                    return Err(Output::error(format!(
                        "Could not read the session's resources: {e}"
                    )));
                }
            }
        };
        let grants = crate::repositories::grants(&mounts.repositories, self.cfg.secrets.as_ref())
            .map_err(Output::error)?;
        let secrets = match &self.cfg.secrets {
            Some(s) if !live => s.environment(workspace).await.map_err(Output::error)?,
            _ => Vec::new(),
        };
        let (env_vars, substitutions) = crate::repositories::placeholders(secrets);
        let setup = [
            crate::repositories::clone_script(&mounts.repositories),
            crate::packages::setup_script(env),
        ]
        .into_iter()
        .flatten()
        .reduce(|a, b| format!("{a}\n{b}"));
        let p = crate::sandboxes::Provision {
            setup,
            files: mounts.files,
            grants,
            substitutions,
            env: env_vars,
        };
        match sandboxes.get(log_id, workspace, policy, p).await {
            Ok(sb) => Ok((sandboxes, sb)),
            Err(e) => Err(Output::error(format!(
                "Could not start a sandbox for this tool: {e}"
            ))),
        }
    }

    /// Run an outcome's check `command` in the sandbox of session `log_id`, apart from the
    /// agent's shell (`agentd_hands::tools::CHECK`).
    pub(super) async fn run_check(&self, log_id: &str, command: &str) -> Output {
        let env = match self.catalog.session_environment(log_id).await {
            Ok(env) => env,
            Err(e) => {
                return Output::error(format!("Cannot read the session's environment: {e}"));
            }
        };
        let policy = policy(&env, &self.cfg.egress_private);
        let (sandboxes, sb) = match self.sandbox(log_id, log_id, &env, policy).await {
            Ok(s) => s,
            Err(out) => return out,
        };
        let input = serde_json::json!({"command": command, "timeout_ms": CHECK_TIMEOUT_MS});
        let out = sb.execute(agentd_hands::tools::CHECK, &input).await;
        sandboxes.done(log_id);
        if !sb.alive() {
            sandboxes.release(log_id).await;
        }
        out
    }

    /// The answer to a call that does not run in the sandbox (the web tools, which the egress
    /// policy governs from here; a tool this agentd lacks); None for a sandbox tool.
    async fn outside_sandbox(
        &self,
        w: &ToolWork,
        policy: &agentd_egress::Policy,
    ) -> Option<Output> {
        match &w.name {
            ToolName::WebFetch => Some(
                match agentd_hands::tools::parse::<WebFetchInput>("web_fetch", &w.input) {
                    Ok(i) => match agentd_egress::fetch(&i.url, policy, WEB_FETCH_LIMIT).await {
                        Ok(text) => Output::ok(text),
                        Err(e) => Output::error(format!("web_fetch: {e}")),
                    },
                    Err(e) => Output::error(e),
                },
            ),
            ToolName::WebSearch => {
                let Some(backend) = &self.cfg.web_search else {
                    return Some(Output::error(
                        "web_search is not available: no search backend is configured on this agentd. Use web_fetch with a known URL.",
                    ));
                };
                Some(
                    match agentd_hands::tools::parse::<WebSearchInput>("web_search", &w.input) {
                        Ok(i) => match agentd_egress::search(backend, &i.query).await {
                            Ok(text) => Output::ok(text),
                            Err(e) => Output::error(format!("web_search: {e}")),
                        },
                        Err(e) => Output::error(e),
                    },
                )
            }
            name if !name.in_sandbox() => Some(Output::error(format!(
                "The tool {:?} is not available in this agentd.",
                name.as_str()
            ))),
            _ => None,
        }
    }

    /// The events a `start_thread` or `send_to_thread` call logs, or the error the model gets.
    /// Only a session's primary thread has thread tools, so its log id is the session's id.
    async fn plan_thread_call(
        &self,
        session_id: &str,
        f: &Fold,
        w: &ToolWork,
        started: usize,
    ) -> Result<std::result::Result<crate::threads::Planned, String>> {
        if w.name == ToolName::StartThread {
            let agent = self.catalog.session_agent(session_id).await?;
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
            if let Some(t) = self.catalog.thread(&c.id).await?
                && t.archived
            {
                archived.push(t.id);
            }
        }
        Ok(crate::threads::send(&w.id, &w.input, f, session_id, |id| {
            archived.iter().any(|a| a == id)
        }))
    }
}

/// The roster a session's agent may start threads with.
fn roster(agent: &SessionAgent) -> Vec<&SessionAgent> {
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
pub(super) struct Toolbox {
    custom: Vec<ToolDef>,
    /// A coordinator's thread tools.
    threads: Vec<ToolDef>,
    /// Enabled built-in tools with the permission each call gets (`Ask` stands for `auto`
    /// until a call is judged).
    builtin: Vec<(ToolName, Permission)>,
    /// The built-in tools under the `auto` policy.
    auto: Vec<ToolName>,
    /// Enabled but not offered, because this agentd cannot run them.
    unavailable: Vec<ToolName>,
    /// Enabled tools of the agent's MCP servers, listed for this turn.
    mcp: Vec<super::mcp::McpOffer>,
}

impl Toolbox {
    pub(super) fn of(tools: &[Tool], can_search: bool) -> Toolbox {
        let mut tb = Toolbox {
            custom: Vec::new(),
            threads: Vec::new(),
            builtin: Vec::new(),
            auto: Vec::new(),
            unavailable: Vec::new(),
            mcp: Vec::new(),
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
                        let name = ToolName::parse(name);
                        if enabled && name == ToolName::WebSearch && !can_search {
                            // Enabled but without a backend: the call gets an error that says so.
                            tb.unavailable.push(name);
                        } else if enabled {
                            let permission = match policy {
                                PermissionPolicy::AlwaysAllow => Permission::Allow,
                                PermissionPolicy::AlwaysAsk => Permission::Ask,
                                PermissionPolicy::Auto => {
                                    tb.auto.push(name.clone());
                                    Permission::Ask
                                }
                            };
                            tb.builtin.push((name, permission));
                        }
                    }
                }
                // Their tools are listed from the servers (`add_mcp`).
                Tool::McpToolset(_) => {}
            }
        }
        tb
    }

    /// A coordinator's primary thread also gets the tools that start and message threads.
    pub(super) fn add_thread_tools(&mut self, agent: &SessionAgent) {
        let roster = roster(agent);
        if roster.is_empty() {
            return;
        }
        self.threads = crate::threads::definitions(&roster);
        for t in &self.threads {
            self.builtin
                .push((ToolName::parse(&t.name), Permission::Allow));
        }
    }

    /// The MCP tools listed for this turn. One whose offered name another tool already has
    /// (a custom tool, or a server whose name cleans up to the same) is left out: the model
    /// must never see two tools of one name.
    pub(super) fn add_mcp(&mut self, offers: Vec<super::mcp::McpOffer>) {
        let mut names: std::collections::HashSet<String> =
            tool_defs(self).into_iter().map(|d| d.name).collect();
        for o in offers {
            if names.insert(o.def.name.clone()) {
                self.mcp.push(o);
            } else {
                tracing::warn!(tool = %o.def.name, server = %o.server, "an MCP tool's name is taken; not offered");
            }
        }
    }

    /// The MCP tool the model knows by `name`, if it is one (a custom tool's name wins).
    pub(super) fn mcp_tool(&self, name: &str) -> Option<&super::mcp::McpOffer> {
        self.mcp.iter().find(|o| o.def.name == name)
    }

    /// Whether some enabled tool runs in the sandbox (and so sees `/mnt/session/outputs`).
    pub(super) fn uses_sandbox(&self) -> bool {
        self.builtin
            .iter()
            .any(|(n, _)| SANDBOX_TOOLS.iter().any(|s| ToolName::parse(s) == *n))
    }

    /// Whether the agent defines a custom tool of this name, which the user answers; a custom
    /// tool's name wins over a built-in's.
    pub(super) fn is_custom(&self, name: &str) -> bool {
        self.custom.iter().any(|c| c.name == name)
    }

    /// Whether a call of the tool the model knows by `name` is judged (`auto`).
    pub(super) fn is_auto(&self, name: &str) -> bool {
        if self.is_custom(name) {
            return false;
        }
        match self.mcp_tool(name) {
            Some(o) => o.auto,
            None => self.auto.contains(&ToolName::parse(name)),
        }
    }

    pub(super) fn permission(&self, name: &ToolName) -> Option<Permission> {
        let unavailable = self.unavailable.contains(name);
        self.builtin
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| *p)
            .or(unavailable.then_some(Permission::Allow))
    }
}

pub(super) fn tool_defs(tb: &Toolbox) -> Vec<ToolDef> {
    let builtin = tb.builtin.iter().filter_map(|(name, _)| {
        agentd_hands::tools::definition(name.as_str()).map(|(description, input_schema)| ToolDef {
            name: name.to_string(),
            description: description.to_owned(),
            input_schema,
        })
    });
    builtin
        .chain(tb.threads.iter().cloned())
        .chain(tb.mcp.iter().map(|o| o.def.clone()))
        .chain(tb.custom.iter().cloned())
        .collect()
}

/// The egress policy an environment asks for, within what the operator opened.
fn policy(env: &EnvironmentConfig, operator: &[agentd_egress::Cidr]) -> agentd_egress::Policy {
    let p = match env {
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
    };
    p.with_operator_ranges(operator)
}

const WORKSPACE_LOST: &str = "The workspace of this session was lost: the session moved to another agentd \
    process, which does not share a workspace root with the one that ran the earlier tool calls, \
    so the files they made are gone. This call did not run. The next call runs in a fresh, empty \
    workspace: make again what the task still needs.";

/// A call the harness itself makes in the sandbox (outcome checks, the grader's view).
pub(super) fn host_call(name: ToolName, input: serde_json::Value) -> ToolWork {
    ToolWork {
        id: String::new(),
        name,
        input,
        action: ToolAction::Run,
    }
}

/// A sandbox output as a result's content, and whether it is an error.
fn blocks(o: Output) -> (Vec<ContentBlock>, bool) {
    let mut content = vec![ContentBlock::text(o.text)];
    if let Some(img) = o.image {
        content.push(ContentBlock::Image {
            source: serde_json::json!({"type": "base64", "media_type": img.media_type, "data": img.data}),
        });
    }
    (content, o.is_error)
}

/// The result event answering call `w`: `agent.mcp_tool_result` for an MCP call,
/// `agent.tool_result` for a built-in one.
fn tool_result(w: &ToolWork, (content, is_error): (Vec<ContentBlock>, bool)) -> NewEvent {
    if matches!(w.name, ToolName::Mcp { .. }) {
        return NewEvent::new(EventBody::AgentMcpToolResult {
            mcp_tool_use_id: w.id.clone(),
            content: Some(content),
            is_error: Some(is_error),
        });
    }
    NewEvent::new(EventBody::AgentToolResult {
        tool_use_id: w.id.clone(),
        content: Some(content),
        is_error: Some(is_error),
    })
}
