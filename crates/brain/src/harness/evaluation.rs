//! Outcome grading: once the agent's turn ends, its work is checked against the session's
//! outcome — the rubric's exact checks in the sandbox, then a grader model call of its own that
//! sees the rubric and what the agent produced, never its reasoning. The pure parts (prompts,
//! verdict parsing, which files to show) are in `crate::outcomes`.

use tokio_util::sync::CancellationToken;

use agentd_models::{Block, Request};
use agentd_session::{NewEvent, Private, at_tail, events};
use agentd_wire::EventBody;
use agentd_wire::event::{Check, OutcomeResult};
use agentd_wire::usage::ModelUsage;

use super::retry::{Retried, quietly, with_retries};
use super::tools::host_call;
use super::{Appended, Flow, Harness};
use crate::Result;
use crate::context::{Fold, Outcome};
use crate::tool_name::ToolName;

/// A grader's verdict: the result, why, and what the grading spent.
type Verdict = (OutcomeResult, String, ModelUsage);

impl Harness {
    /// Grade the agent's latest work against the log's outcome, bracketed by the evaluation's
    /// span, with heartbeats while it runs.
    pub(super) async fn evaluate(
        &self,
        log_id: &str,
        f: &Fold,
        o: Outcome,
        cancel: &CancellationToken,
    ) -> Result<Flow> {
        let start = match &o.open_eval {
            Some(id) => id.clone(),
            None => {
                let ev = NewEvent::new(EventBody::SpanOutcomeEvaluationStart {
                    outcome_id: o.id.clone(),
                    iteration: o.iteration,
                });
                let id = ev.id.clone();
                match self.append(log_id, at_tail(f.tail, vec![ev])).await? {
                    Appended::Done(_) => id,
                    Appended::Stale => return Ok(Flow::Continue),
                    Appended::Terminated => return Ok(Flow::Stop),
                }
            }
        };
        let end = |result: OutcomeResult, explanation: String, usage: ModelUsage| {
            NewEvent::new(EventBody::SpanOutcomeEvaluationEnd {
                outcome_evaluation_start_id: start.clone(),
                outcome_id: o.id.clone(),
                iteration: o.iteration,
                result,
                explanation,
                usage,
            })
        };
        let interrupted = || {
            end(
                OutcomeResult::Interrupted,
                "The user interrupted the evaluation.".into(),
                ModelUsage::default(),
            )
        };
        let grading = self.grade(log_id, &o, cancel);
        tokio::pin!(grading);
        let mut beat = tokio::time::interval(self.cfg.outcome_heartbeat);
        beat.tick().await;
        let (result, explanation, usage) = loop {
            tokio::select! {
                v = &mut grading => match v? {
                    Some(v) => break v,
                    None => {
                        self.append(log_id, events(vec![interrupted()])).await?;
                        return Ok(Flow::Stop);
                    }
                },
                () = cancel.cancelled() => {
                    self.append(log_id, events(vec![interrupted()])).await?;
                    return Ok(Flow::Stop);
                }
                _ = beat.tick() => {
                    // A heartbeat tells a client the grading runs, as opposed to being stuck.
                    let ev = NewEvent::new(EventBody::SpanOutcomeEvaluationOngoing {
                        outcome_id: o.id.clone(),
                        iteration: o.iteration,
                    });
                    self.append(log_id, events(vec![ev])).await?;
                }
            }
        };
        let mut ev = end(result, explanation, usage);
        if usage != ModelUsage::default() {
            let model = self.catalog.session_agent(log_id).await?.spec.model.id;
            ev = ev.with_private(Private::Cost {
                pico_usd: self.cost(&model, &usage),
                refused: false,
            });
        }
        self.append(log_id, events(vec![ev])).await?;
        Ok(Flow::Continue)
    }

    /// The verdict on the agent's work: the rubric's exact checks first, then — when the
    /// rubric has text criteria — the model grader. None when `cancel` stopped the grader.
    async fn grade(
        &self,
        log_id: &str,
        o: &Outcome,
        cancel: &CancellationToken,
    ) -> Result<Option<Verdict>> {
        // The last allowed iteration turns a needs_revision into the final verdict.
        let last = o.iteration + 1 >= o.max_iterations;
        let revise = if last {
            OutcomeResult::MaxIterationsReached
        } else {
            OutcomeResult::NeedsRevision
        };
        let none = ModelUsage::default;
        let failures = self.failed_checks(log_id, o).await;
        if !failures.is_empty() {
            let why = format!("These checks failed:\n- {}", failures.join("\n- "));
            return Ok(Some((revise, why, none())));
        }
        if !o.checks.is_empty() && o.rubric.trim().is_empty() {
            return Ok(Some((
                OutcomeResult::Satisfied,
                "All checks passed.".into(),
                none(),
            )));
        }
        let agent = self.catalog.session_agent(log_id).await?;
        let (model, upstream_id) = match self.models.resolve(&agent.spec.model.id) {
            Ok(m) => m,
            Err(e) => {
                return Ok(Some((
                    OutcomeResult::Failed,
                    format!("The grader model is unavailable: {e}"),
                    none(),
                )));
            }
        };
        let files = self.workspace_view(log_id, o).await;
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
            purpose: agentd_models::Purpose::Grading {
                iteration: o.iteration,
            },
        };
        let (model, request) = (model.as_ref(), &request);
        let verdict = match with_retries(
            &self.cfg.retry,
            Some(cancel),
            quietly("grading", log_id),
            |_| async move { model.complete(request, &mut |_| {}).await },
        )
        .await?
        {
            Retried::Finished { result, .. } => result,
            // The hook never gives up, so only an interrupt ends the grading here.
            Retried::Cancelled | Retried::Abandoned => return Ok(None),
        };
        Ok(Some(match verdict {
            Ok(resp) => {
                let (r, x) = crate::outcomes::parse_verdict(&resp.text());
                let r = if r == OutcomeResult::NeedsRevision {
                    revise
                } else {
                    r
                };
                (r, x, resp.usage)
            }
            Err(e) => (
                OutcomeResult::Failed,
                format!("The grader could not be reached: {e}"),
                none(),
            ),
        }))
    }

    /// What the rubric's exact checks found wrong, one line each; empty when all passed.
    async fn failed_checks(&self, log_id: &str, o: &Outcome) -> Vec<String> {
        let mut failures = Vec::new();
        for c in &o.checks {
            match c {
                Check::Command { command } => {
                    let out = self.run_check(log_id, command).await;
                    failures.extend(crate::outcomes::command_failure(command, &out));
                }
                Check::JsonSchema { file, schema } => {
                    // Read through the sandbox, as the agent would: a symlink the agent
                    // planted resolves inside it, never to a host file.
                    if let Err(e) = crate::outcomes::plain_path(file) {
                        failures.push(e);
                        continue;
                    }
                    let read = host_call(ToolName::Read, serde_json::json!({"file_path": file}));
                    let out = self.execute(log_id, log_id, &read).await;
                    if out.is_error {
                        failures.push(out.text);
                    } else {
                        failures.extend(crate::outcomes::content_failure(file, &out.text, schema));
                    }
                }
            }
        }
        failures
    }

    /// The workspace as the grader sees it: a listing, and the files the outcome or its rubric
    /// name — read through the sandbox, so nothing outside the workspace can be shown.
    async fn workspace_view(&self, log_id: &str, o: &Outcome) -> String {
        use crate::outcomes::{MAX_FILE, MAX_LISTED, MAX_SHOWN, listable, mentioned};
        if self.sandboxes.is_none() {
            return String::new();
        }
        let glob = host_call(ToolName::Glob, serde_json::json!({"pattern": "**/*"}));
        let list = self.execute(log_id, log_id, &glob).await;
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
            let read = host_call(ToolName::Read, serde_json::json!({"file_path": rel}));
            let out = self.execute(log_id, log_id, &read).await;
            if !out.is_error && out.text.len() <= MAX_FILE {
                shown.push_str(&format!("--- {rel} ---\n{}\n", out.text));
            }
        }
        format!("Files in the workspace:\n{}\n\n{shown}\n", files.join("\n"))
    }
}
