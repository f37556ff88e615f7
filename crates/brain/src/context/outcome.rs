//! The outcome loop as the log tells it: the outcome defined last, its open evaluation, the
//! agent's latest answer, and what each verdict says to the model.

use agentd_models::{Block, Role};
use agentd_session::Private;
use agentd_wire::ContentBlock;
use agentd_wire::event::{
    OUTCOME_DEFAULT_ITERATIONS, OUTCOME_MAX_ITERATIONS, OutcomeResult, Rubric,
};

use super::Outcome;
use super::builder::Builder;

/// `user.define_outcome`: the task joins the conversation and a fresh outcome begins.
pub(super) fn define(
    b: &mut Builder,
    outcome_id: &str,
    description: &str,
    rubric: &Rubric,
    private: Option<&Private>,
    max_iterations: Option<u32>,
) -> Outcome {
    let (content, checks) = match (rubric, private) {
        (Rubric::Text { content, checks }, _) => (content.clone(), checks.clone()),
        (Rubric::File { .. }, Some(Private::Rubric { text })) => (text.clone(), Vec::new()),
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
    Outcome {
        id: outcome_id.to_owned(),
        description: description.to_owned(),
        rubric: content,
        checks,
        max_iterations: max_iterations
            .unwrap_or(OUTCOME_DEFAULT_ITERATIONS)
            .clamp(1, OUTCOME_MAX_ITERATIONS),
        iteration: 0,
        open_eval: None,
        answer: String::new(),
        active: true,
    }
}

impl Outcome {
    /// `span.outcome_evaluation_end`: the verdict closes the evaluation. True when the model is
    /// to hear it and go on (revise, or say where the work stands).
    pub(super) fn evaluated(
        &mut self,
        b: &mut Builder,
        iteration: u32,
        result: &OutcomeResult,
        explanation: &str,
    ) -> bool {
        self.open_eval = None;
        match result {
            OutcomeResult::NeedsRevision => {
                self.iteration = iteration + 1;
                b.push(
                    Role::User,
                    vec![Block::Text {
                        text: format!(
                            "A grader judged your work against the rubric: not met yet.\n{explanation}\nRevise your work so it meets every criterion."
                        ),
                    }],
                );
                true
            }
            OutcomeResult::MaxIterationsReached => {
                self.active = false;
                b.push(
                    Role::User,
                    vec![Block::Text {
                        text: format!(
                            "The evaluation budget is spent and the rubric is still not met: {explanation}\nSay briefly where the work stands."
                        ),
                    }],
                );
                true
            }
            _ => {
                self.active = false;
                false
            }
        }
    }

    /// The agent's latest message is the work the next evaluation grades.
    pub(super) fn answered(&mut self, content: &[ContentBlock]) {
        self.answer = ContentBlock::join_text(content);
    }

    /// An interrupt stops the loop; an evaluation in flight is closed by the harness as
    /// `interrupted`.
    pub(super) fn interrupted(&mut self) {
        if self.open_eval.is_none() {
            self.active = false;
        }
    }
}
