//! What a log's events add up to: status, usage, active time, outcome evaluations.
//!
//! A backend keeps one `Projection` per log beside the log and saves it in the transaction
//! that appends the events it folds in; it never decides what an event means. Every rule
//! lives in `apply`, so a second backend cannot disagree with the first.

use agentd_wire::event::OutcomeResult;
use agentd_wire::session::{OutcomeEvaluation, OutcomeEvaluationTag};
use agentd_wire::{EventBody, SessionStatus, Timestamp, Usage};

use crate::{Head, Private};

/// The projection of one log, as its row holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub status: SessionStatus,
    pub last_seq: u64,
    /// Tokens spent on this log; a session's log also counts its threads'.
    pub usage: Usage,
    /// What those tokens cost at list prices, picodollars (exact; shown rounded to the cent).
    pub cost: u64,
    /// Only a session's log shows these; a thread's are folded and not kept.
    pub outcomes: Vec<OutcomeEvaluation>,
    /// Time spent running, up to the last time the log stopped running.
    pub active_ms: i64,
    /// When the log started running, while it runs.
    pub running_since: Option<Timestamp>,
}

impl Default for Projection {
    /// An empty log: a session or thread as it is created.
    fn default() -> Self {
        Projection {
            status: SessionStatus::Idle,
            last_seq: 0,
            usage: Usage::default(),
            cost: 0,
            outcomes: Vec::new(),
            active_ms: 0,
            running_since: None,
        }
    }
}

impl Projection {
    pub fn head(&self) -> Head {
        Head {
            status: self.status,
            last_seq: self.last_seq,
            holder: None,
        }
    }

    /// Fold the next event of the log in, at position `last_seq + 1`, and finish its body: a
    /// `session.usage` is a snapshot of the log's usage as of itself, which only the
    /// projection knows (a session's log counts tokens its threads spent concurrently).
    /// Returns what the event spent, which a thread's session counts too.
    pub fn apply(
        &mut self,
        body: &mut EventBody,
        private: Option<&Private>,
        now: Timestamp,
    ) -> Spent {
        self.last_seq += 1;
        let before = self.usage.clone();
        self.project(body, now);
        let cost = match private {
            Some(Private::Compaction {
                usage, pico_usd, ..
            }) => {
                // The summary's tokens are spent like a turn's.
                self.usage.add(usage);
                *pico_usd
            }
            Some(Private::Cost { pico_usd, .. }) => *pico_usd,
            _ => 0,
        };
        self.cost += cost;
        if let EventBody::SessionUsage { usage } = body {
            *usage = self.shown_usage(None);
        }
        let mut usage = self.usage.clone();
        usage.subtract(&before);
        Spent { usage, cost }
    }

    /// The usage as the API shows it: the tokens, their list cost rounded to the cent, and
    /// the active time when given.
    pub fn shown_usage(&self, active_seconds: Option<f64>) -> Usage {
        shown_usage(&self.usage, self.cost, active_seconds)
    }

    /// Count what a thread of this session spent.
    pub fn add_spent(&mut self, s: &Spent) {
        self.usage.add_usage(&s.usage);
        self.cost += s.cost;
    }

    fn project(&mut self, body: &EventBody, now: Timestamp) {
        match body {
            EventBody::SpanModelRequestEnd { model_usage, .. } => self.usage.add(model_usage),
            EventBody::UserDefineOutcome {
                outcome_id,
                description,
                ..
            } => self.outcomes.push(OutcomeEvaluation {
                kind: OutcomeEvaluationTag::OutcomeEvaluation,
                outcome_id: outcome_id.clone(),
                description: description.clone(),
                iteration: 0,
                result: OutcomeResult::Pending,
                explanation: None,
                completed_at: None,
            }),
            EventBody::SpanModelRequestStart {} => {
                for o in self.outcomes.iter_mut().filter(|o| {
                    matches!(
                        o.result,
                        OutcomeResult::Pending | OutcomeResult::NeedsRevision
                    )
                }) {
                    o.result = OutcomeResult::Running;
                }
            }
            EventBody::SpanOutcomeEvaluationStart {
                outcome_id,
                iteration,
            } => {
                if let Some(o) = self.outcome(outcome_id) {
                    o.result = OutcomeResult::Evaluating;
                    o.iteration = *iteration;
                }
            }
            EventBody::SpanOutcomeEvaluationEnd {
                outcome_id,
                iteration,
                result,
                explanation,
                usage,
                ..
            } => {
                self.usage.add(usage);
                if let Some(o) = self.outcome(outcome_id) {
                    o.result = *result;
                    o.iteration = *iteration;
                    o.explanation = Some(explanation.clone());
                    o.completed_at = result.is_final().then_some(now);
                }
            }
            _ => {}
        }
        if let Some(next) = crate::status_after(body) {
            self.move_to(next, now);
        }
    }

    fn outcome(&mut self, id: &str) -> Option<&mut OutcomeEvaluation> {
        self.outcomes.iter_mut().find(|o| o.outcome_id == id)
    }

    /// Change status, counting the time spent running.
    fn move_to(&mut self, next: SessionStatus, now: Timestamp) {
        match (self.running_since, next) {
            (None, SessionStatus::Running) => self.running_since = Some(now),
            (Some(since), s) if s != SessionStatus::Running => {
                self.active_ms += (now - since).num_milliseconds().max(0);
                self.running_since = None;
            }
            _ => {}
        }
        self.status = next;
    }
}

/// What one event spent: tokens and their list cost, picodollars.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Spent {
    pub usage: Usage,
    pub cost: u64,
}

/// A stored usage as the API shows it: `cost` (picodollars) rounded to the cent as
/// `list_cost`, and the active time when given.
pub fn shown_usage(usage: &Usage, cost: u64, active_seconds: Option<f64>) -> Usage {
    Usage {
        active_seconds,
        list_cost: Some(agentd_wire::usage::MonetaryAmount::usd_from_pico(cost)),
        ..usage.clone()
    }
}

/// Time spent running as of `now`: what `active_ms` counted up to the last stop, plus the
/// stretch since `running_since` if the log still runs.
fn active_ms(active_ms: i64, running_since: Option<Timestamp>, now: Timestamp) -> i64 {
    active_ms + running_since.map_or(0, |s| (now - s).num_milliseconds().max(0))
}

/// A session's or thread's `stats` as of `now`: (active seconds, seconds since created).
pub fn stats(
    active_ms: i64,
    running_since: Option<Timestamp>,
    created_at: Timestamp,
    now: Timestamp,
) -> (f64, f64) {
    let active = self::active_ms(active_ms, running_since, now);
    let lived = (now - created_at).num_milliseconds().max(0);
    (active as f64 / 1000.0, lived as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use agentd_wire::event::Rubric;
    use agentd_wire::usage::ModelUsage;

    use super::*;

    fn at(ms: i64) -> Timestamp {
        chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + ms).unwrap()
    }

    fn apply(p: &mut Projection, mut body: EventBody, ms: i64) -> (EventBody, Usage) {
        let spent = p.apply(&mut body, None, at(ms));
        (body, spent.usage)
    }

    fn tokens(input: u64, output: u64) -> ModelUsage {
        ModelUsage {
            input_tokens: input,
            output_tokens: output,
            ..ModelUsage::default()
        }
    }

    #[test]
    fn status_moves_and_running_time_adds_up() {
        let mut p = Projection::default();
        apply(&mut p, EventBody::SessionStatusRunning {}, 0);
        assert_eq!(p.status, SessionStatus::Running);
        assert_eq!(p.running_since, Some(at(0)));
        // Running again does not restart the clock.
        apply(&mut p, EventBody::SessionStatusRunning {}, 500);
        apply(&mut p, EventBody::SessionStatusTerminated {}, 1500);
        assert_eq!(p.status, SessionStatus::Terminated);
        assert_eq!(p.active_ms, 1500);
        assert_eq!(p.running_since, None);
        assert_eq!(p.last_seq, 3);
        // A stretch under way counts as of now.
        apply(&mut p, EventBody::SessionStatusRunning {}, 2000);
        assert_eq!(active_ms(p.active_ms, p.running_since, at(2250)), 1750);
        assert_eq!(
            stats(p.active_ms, p.running_since, at(0), at(3000)),
            (2.5, 3.0)
        );
    }

    #[test]
    fn tokens_count_and_a_usage_event_snapshots_them() {
        let mut p = Projection::default();
        let (_, spent) = apply(
            &mut p,
            EventBody::SpanModelRequestEnd {
                model_request_start_id: "sevt_x".into(),
                is_error: None,
                model_usage: tokens(10, 3),
            },
            0,
        );
        assert_eq!((spent.input_tokens, spent.output_tokens), (10, 3));
        let compaction = Private::Compaction {
            summary: "s".into(),
            upto: 1,
            usage: tokens(5, 1),
            pico_usd: 7,
        };
        let mut body = EventBody::SessionUsage {
            usage: Usage::default(),
        };
        let spent = p.apply(&mut body, Some(&compaction), at(1));
        assert_eq!((spent.usage.input_tokens, spent.cost), (5, 7));
        let EventBody::SessionUsage { usage } = body else {
            unreachable!()
        };
        assert_eq!((usage.input_tokens, usage.output_tokens), (15, 4));
        assert_eq!(usage.active_seconds, None);
    }

    #[test]
    fn priced_calls_add_up_exactly_and_show_to_the_cent() {
        let mut p = Projection::default();
        let cent = agentd_wire::usage::PICO_USD_PER_CENT;
        // Three calls of 0.4 cent each: 1.2 cents, shown as 1; no call alone reaches one.
        for _ in 0..3 {
            let mut body = EventBody::SpanModelRequestEnd {
                model_request_start_id: "sevt_x".into(),
                is_error: None,
                model_usage: tokens(1, 1),
            };
            let spent = p.apply(
                &mut body,
                Some(&Private::Cost {
                    pico_usd: cent * 4 / 10,
                    refused: false,
                }),
                at(0),
            );
            assert_eq!(spent.cost, cent * 4 / 10);
        }
        assert_eq!(p.cost, cent * 12 / 10);
        let mut body = EventBody::SessionUsage {
            usage: Usage::default(),
        };
        p.apply(&mut body, None, at(1));
        let EventBody::SessionUsage { usage } = body else {
            unreachable!()
        };
        let shown = usage.list_cost.unwrap();
        assert_eq!(
            (shown.amount.as_str(), shown.currency.as_str()),
            ("1", "USD")
        );
    }

    #[test]
    fn an_outcome_goes_pending_running_evaluating_and_ends() {
        let mut p = Projection::default();
        apply(
            &mut p,
            EventBody::UserDefineOutcome {
                outcome_id: "outc_1".into(),
                description: "d".into(),
                rubric: Rubric::Text {
                    content: "r".into(),
                    checks: vec![],
                },
                max_iterations: None,
            },
            0,
        );
        assert_eq!(p.outcomes[0].result, OutcomeResult::Pending);
        apply(&mut p, EventBody::SpanModelRequestStart {}, 1);
        assert_eq!(p.outcomes[0].result, OutcomeResult::Running);
        let eval = |iteration| EventBody::SpanOutcomeEvaluationStart {
            outcome_id: "outc_1".into(),
            iteration,
        };
        let end = |iteration, result| EventBody::SpanOutcomeEvaluationEnd {
            outcome_evaluation_start_id: "sevt_e".into(),
            outcome_id: "outc_1".into(),
            iteration,
            result,
            explanation: "because".into(),
            usage: tokens(2, 1),
        };
        apply(&mut p, eval(0), 2);
        assert_eq!(p.outcomes[0].result, OutcomeResult::Evaluating);
        apply(&mut p, end(0, OutcomeResult::NeedsRevision), 3);
        assert_eq!(p.outcomes[0].result, OutcomeResult::NeedsRevision);
        assert_eq!(p.outcomes[0].completed_at, None);
        assert_eq!(p.usage.input_tokens, 2);
        apply(&mut p, EventBody::SpanModelRequestStart {}, 4);
        assert_eq!(p.outcomes[0].result, OutcomeResult::Running);
        apply(&mut p, eval(1), 5);
        apply(&mut p, end(1, OutcomeResult::Satisfied), 6);
        let o = &p.outcomes[0];
        assert_eq!((o.result, o.iteration), (OutcomeResult::Satisfied, 1));
        assert_eq!(o.explanation.as_deref(), Some("because"));
        assert_eq!(o.completed_at, Some(at(6)));
        // A finished outcome is not reopened by later turns.
        apply(&mut p, EventBody::SpanModelRequestStart {}, 7);
        assert_eq!(p.outcomes[0].result, OutcomeResult::Satisfied);
    }
}
