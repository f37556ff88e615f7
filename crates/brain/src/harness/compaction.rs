//! Compaction: once a request's prompt reaches the threshold, the model summarises the older
//! turns of its own context; `agent.thread_context_compacted` carries the summary and where it
//! cuts, and the fold starts the context from there. The log keeps every event.

use tokio_util::sync::CancellationToken;

use agentd_models::{Block, Request};
use agentd_session::{NewEvent, Private, at_tail};
use agentd_wire::EventBody;

use super::retry::{Retried, quietly, with_retries};
use super::{Appended, Compaction, Harness};
use crate::Result;
use crate::context::Fold;

/// The system prompt of a compaction request; tests and scripted models recognise it.
pub const SYSTEM: &str = "You compact an agent's conversation: you write the summary that will \
replace its older turns in the agent's context, so the agent can go on without them.";

pub const INSTRUCTION: &str = "Summarise the conversation above for the agent that will continue \
it: the user's goals and instructions, decisions made and why, files and commands touched, facts \
learned, what is done, and what remains. Be complete about anything the agent still needs; leave \
out pleasantries. Reply with the summary only.";

/// Whether a compaction made it into the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compacted {
    /// Logged: the next fold starts from the summary.
    Logged,
    /// Nothing logged; the context stays whole.
    Skipped,
}

impl Harness {
    /// Replace older turns of the model's context with a summary the model writes. Without a
    /// clean place to cut, or if the summary cannot be made, the context stays as it is.
    pub(super) async fn compact(
        &self,
        log_id: &str,
        f: &Fold,
        c: Compaction,
        cancel: &CancellationToken,
    ) -> Result<Compacted> {
        let limit = f.messages.len().saturating_sub(c.keep_messages);
        let Some(cut) = (1..=limit)
            .rev()
            .find(|i| f.messages[*i].role == agentd_models::Role::Assistant)
        else {
            return Ok(Compacted::Skipped);
        };
        let agent = self.catalog.session_agent(log_id).await?;
        let Ok((model, upstream_id)) = self.models.resolve(&agent.spec.model.id) else {
            return Ok(Compacted::Skipped);
        };
        let mut messages = f.messages[..cut].to_vec();
        let ask = Block::Text {
            text: INSTRUCTION.into(),
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
            system: Some(SYSTEM.into()),
            messages,
            tools: vec![],
            max_tokens: 4096,
            purpose: agentd_models::Purpose::Compaction,
        };
        let (model, request) = (model.as_ref(), &request);
        let reply = match with_retries(
            &self.cfg.retry,
            Some(cancel),
            quietly("compaction", log_id),
            |_| async move { model.complete(request, &mut |_| {}).await },
        )
        .await?
        {
            Retried::Finished { result, .. } => result,
            // An interrupt wins, and the context stays whole.
            Retried::Cancelled | Retried::Abandoned => return Ok(Compacted::Skipped),
        };
        let (summary, usage) = match reply {
            Ok(resp) => (resp.text(), resp.usage),
            Err(e) => {
                tracing::warn!(session = log_id, error = %e, "compaction failed; the context stays whole");
                return Ok(Compacted::Skipped);
            }
        };
        if summary.trim().is_empty() {
            return Ok(Compacted::Skipped);
        }
        let ev = NewEvent::new(EventBody::AgentThreadContextCompacted {}).with_private(
            Private::Compaction {
                summary,
                upto: f.message_starts[cut],
                pico_usd: self.cost(&agent.spec.model.id, &usage),
                usage,
            },
        );
        tracing::info!(
            session = log_id,
            prompt_tokens = f.prompt_tokens,
            "compacted the context"
        );
        Ok(
            match self.append(log_id, at_tail(f.tail, vec![ev])).await? {
                Appended::Done(_) => Compacted::Logged,
                Appended::Stale | Appended::Terminated => Compacted::Skipped,
            },
        )
    }
}
