//! Outcomes: the agent works, a separate grader call judges against the rubric, the agent
//! revises until the rubric is met or the budget is spent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use agentd_brain::HarnessConfig;
use agentd_session::StoredEvent;
use agentd_testkit::world::World;
use agentd_testkit::{FakeAnthropic, FakeReply};
use agentd_wire::event::Rubric;
use agentd_wire::{EventBody, StopReason};

fn is_grader(body: &Value) -> bool {
    body["system"]
        .to_string()
        .contains(agentd_models::GRADER_SYSTEM_PREFIX)
}

/// An upstream where the agent answers "draft N" and the grader gives `verdicts` in turn.
async fn upstream(
    verdicts: Vec<&'static str>,
    grader_hangs: bool,
) -> (FakeAnthropic, Arc<Mutex<Vec<Value>>>) {
    let graded = Arc::new(Mutex::new(Vec::new()));
    let seen = graded.clone();
    let fake = FakeAnthropic::start_fn(move |body| {
        if is_grader(body) {
            let mut g = seen.lock().unwrap();
            g.push(body.clone());
            if grader_hangs {
                return FakeReply::Hang;
            }
            let v = verdicts
                .get(g.len() - 1)
                .or(verdicts.last())
                .copied()
                .unwrap_or("satisfied");
            return FakeReply::text(
                json!({"result": v, "explanation": format!("verdict {}", g.len())}).to_string(),
            );
        }
        let turns = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "assistant")
            .count();
        FakeReply::text(format!("draft {}", turns + 1))
    })
    .await;
    (fake, graded)
}

async fn define(w: &World, sid: &str, max_iterations: Option<u32>) {
    w.send(
        sid,
        vec![EventBody::UserDefineOutcome {
            outcome_id: "outc_test".into(),
            description: "Write report.md with a title".into(),
            rubric: Rubric::Text {
                content: "1. report.md exists\n2. it starts with '# '".into(),
                checks: vec![],
            },
            max_iterations,
        }],
    )
    .await;
}

fn evals(log: &[StoredEvent]) -> Vec<(u32, String)> {
    log.iter()
        .filter_map(|e| match &e.event.body {
            EventBody::SpanOutcomeEvaluationEnd {
                iteration, result, ..
            } => Some((*iteration, result.as_str().to_owned())),
            _ => None,
        })
        .collect()
}

fn messages(log: &[StoredEvent]) -> Vec<String> {
    log.iter()
        .filter_map(|e| match &e.event.body {
            EventBody::AgentMessage { content } => {
                Some(agentd_wire::ContentBlock::join_text(content))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_agent_revises_until_the_grader_is_satisfied() {
    let (fake, graded) = upstream(vec!["needs_revision", "satisfied"], false).await;
    let w = World::start(
        &fake.base_url(),
        json!({"name": "a", "model": "claude-test"}),
        HarnessConfig::default(),
    )
    .await;
    let sid = w.session().await;
    define(&w, &sid, None).await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    assert_eq!(
        evals(&log),
        vec![(0, "needs_revision".into()), (1, "satisfied".into())]
    );
    assert_eq!(messages(&log), vec!["draft 1", "draft 2"]);
    // The revision turn saw the grader's feedback.
    let agent_requests: Vec<Value> = fake
        .requests()
        .into_iter()
        .filter(|b| !is_grader(b))
        .collect();
    assert!(agent_requests[1].to_string().contains("verdict 1"));
    // The grader saw the rubric and the latest answer, each time with its iteration.
    let g = graded.lock().unwrap().clone();
    assert!(
        g[0].to_string().contains("Evaluation iteration: 0")
            && g[0].to_string().contains("draft 1")
    );
    assert!(
        g[1].to_string().contains("Evaluation iteration: 1")
            && g[1].to_string().contains("draft 2")
    );
    assert!(g[0].to_string().contains("it starts with"));
    assert!(matches!(
        &log.last().unwrap().event.body,
        EventBody::SessionStatusIdle {
            stop_reason: StopReason::EndTurn,
            ..
        }
    ));
    let s = w.store.get_session(&w.ws, &sid).await.unwrap();
    assert_eq!(s.outcome_evaluations.len(), 1);
    assert_eq!(s.outcome_evaluations[0].result.as_str(), "satisfied");
    assert_eq!(s.outcome_evaluations[0].iteration, 1);
    assert!(s.outcome_evaluations[0].completed_at.is_some());
}

#[tokio::test]
async fn the_loop_stops_at_max_iterations_with_a_final_acknowledgment() {
    let (fake, _) = upstream(vec!["needs_revision"], false).await;
    let w = World::start(
        &fake.base_url(),
        json!({"name": "a", "model": "claude-test"}),
        HarnessConfig::default(),
    )
    .await;
    let sid = w.session().await;
    define(&w, &sid, Some(2)).await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    assert_eq!(
        evals(&log),
        vec![
            (0, "needs_revision".into()),
            (1, "max_iterations_reached".into())
        ]
    );
    // Two attempts, then one acknowledgment turn; no third evaluation.
    assert_eq!(messages(&log).len(), 3);
    let last_agent = fake
        .requests()
        .into_iter()
        .rfind(|b| !is_grader(b))
        .unwrap();
    assert!(
        last_agent
            .to_string()
            .contains("evaluation budget is spent")
    );
}

#[tokio::test]
async fn an_interrupt_during_evaluation_ends_it_as_interrupted() {
    let (fake, graded) = upstream(vec![], true).await;
    let cfg = HarnessConfig {
        outcome_heartbeat: Duration::from_millis(20),
        ..HarnessConfig::default()
    };
    let w = World::start(
        &fake.base_url(),
        json!({"name": "a", "model": "claude-test"}),
        cfg,
    )
    .await;
    let sid = w.session().await;
    define(&w, &sid, None).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while graded.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the grader was never called");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // While the grader works, heartbeats show the evaluation is alive.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = w.store.read(&sid, 0, 1000).await.unwrap();
        if log
            .iter()
            .any(|e| matches!(e.event.body, EventBody::SpanOutcomeEvaluationOngoing { .. }))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no span.outcome_evaluation_ongoing heartbeat"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    w.interrupt(&sid).await;
    let log = w.settle(&sid, Duration::from_secs(2)).await;
    assert_eq!(evals(&log), vec![(0, "interrupted".into())]);
    let s = w.store.get_session(&w.ws, &sid).await.unwrap();
    assert_eq!(s.outcome_evaluations[0].result.as_str(), "interrupted");
    assert_eq!(w.store.read(&sid, 0, 1000).await.unwrap().len(), log.len());
}
