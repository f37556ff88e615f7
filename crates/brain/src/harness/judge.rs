//! The `auto` permission policy: before a call under it is logged, the agent's own model judges
//! it, from the tool, its input and what the user asked, as safe (allow) or high-risk (deny).
//! A call it cannot judge (the model fails, or answers neither) is put to the user (ask), as
//! the SDK defines the policy. The judgement is recorded as the call's `evaluated_permission`
//! in the same append as the call, so a restart never judges (or runs) a call twice.

use std::collections::HashMap;

use agentd_models::{Block, Message, Request, Role, Usage};
use agentd_wire::event::Permission;
use tokio_util::sync::CancellationToken;

use super::Harness;
use super::retry::{Retried, quietly, with_retries};
use super::tools::Toolbox;
use crate::context::Fold;

const SYSTEM: &str = "You review the tool calls of an AI agent before they run, for a user who is not watching. \
Judge one call: is it safe to run without the user's review, or high-risk? High-risk means it could destroy or \
leak data, spend money, change systems outside the agent's own workspace, reach out to people or services on the \
user's behalf, or do something the user did not ask for. Reading, searching and work inside the agent's own \
workspace are safe. Answer with one word: ALLOW for a safe call, DENY for a high-risk one.";

/// Most characters of the input and of the user's request shown to the judge.
const SHOWN: usize = 8000;

fn cut(s: &str) -> String {
    match s.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The judge's answer read as a permission: ALLOW or DENY first, anything else is no verdict.
fn verdict(text: &str) -> Permission {
    let word: String = text
        .trim()
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect::<String>()
        .to_ascii_uppercase();
    match word.as_str() {
        "ALLOW" => Permission::Allow,
        "DENY" => Permission::Deny,
        _ => Permission::Ask,
    }
}

/// What the user last asked, as the judge sees it.
fn request_of(f: &Fold) -> String {
    f.messages
        .iter()
        .rev()
        .filter(|m| m.role == Role::User)
        .map(Message::text)
        .find(|t| !t.trim().is_empty())
        .unwrap_or_default()
}

impl Harness {
    /// A permission for each call of `content` under the `auto` policy, by tool use id, and
    /// what the judging took (it counts in the turn's usage and cost).
    pub(super) async fn judge_calls(
        &self,
        log_id: &str,
        model_id: &str,
        f: &Fold,
        content: &[Block],
        tb: &Toolbox,
        cancel: &CancellationToken,
    ) -> (HashMap<String, Permission>, Usage) {
        let mut out = HashMap::new();
        let mut usage = Usage::default();
        for b in content {
            if let Block::ToolUse { id, name, input } = b
                && tb.is_auto(name)
            {
                let (p, u) = self.judge(log_id, model_id, f, name, input, cancel).await;
                tracing::info!(session = log_id, tool = %name, permission = ?p, "judged a call");
                out.insert(id.clone(), p);
                usage.add(&u);
            }
        }
        (out, usage)
    }

    async fn judge(
        &self,
        log_id: &str,
        model_id: &str,
        f: &Fold,
        name: &str,
        input: &serde_json::Value,
        cancel: &CancellationToken,
    ) -> (Permission, Usage) {
        let Ok((model, upstream_id)) = self.models.resolve(model_id) else {
            return (Permission::Ask, Usage::default());
        };
        let ask = format!(
            "The user asked:\n<request>\n{}\n</request>\n\nThe agent wants to call the tool `{name}` with this input:\n<input>\n{}\n</input>\n\nAnswer ALLOW or DENY.",
            cut(&request_of(f)),
            cut(&input.to_string()),
        );
        let request = Request {
            model: upstream_id,
            system: Some(SYSTEM.into()),
            messages: vec![Message {
                role: Role::User,
                content: vec![Block::Text { text: ask }],
            }],
            tools: vec![],
            max_tokens: 16,
            purpose: agentd_models::Purpose::PermissionCheck,
        };
        let (model, request) = (model.as_ref(), &request);
        let reply = with_retries(
            &self.cfg.retry,
            Some(cancel),
            quietly("permission check", log_id),
            |_| async move { model.complete(request, &mut |_| {}).await },
        )
        .await;
        match reply {
            Ok(Retried::Finished {
                result: Ok(resp), ..
            }) => (verdict(&resp.text()), resp.usage),
            _ => (Permission::Ask, Usage::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::verdict;
    use agentd_wire::event::Permission;

    #[test]
    fn only_a_clear_verdict_allows_or_denies() {
        assert_eq!(verdict("ALLOW"), Permission::Allow);
        assert_eq!(verdict(" deny."), Permission::Deny);
        assert_eq!(verdict("Allowed, I think"), Permission::Ask);
        assert_eq!(verdict(""), Permission::Ask);
        assert_eq!(verdict("I cannot tell"), Permission::Ask);
    }
}
