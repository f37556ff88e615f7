//! A long session past the context threshold: older turns are compacted into a summary in the
//! model's context, the log keeps every event, and the session keeps working.

use std::time::Duration;

use serde_json::{Value, json};

use agentd_brain::{Compaction, HarnessConfig};
use agentd_testkit::world::World;
use agentd_testkit::{FakeAnthropic, FakeReply};
use agentd_wire::EventBody;

fn is_compaction(body: &Value) -> bool {
    body["system"]
        .to_string()
        .contains("You compact an agent's conversation")
}

/// A session compacting past 300 tokens (keeping 2 messages) that is told "turn number i" for
/// `turns` turns, each settled; returns the world, the session and its log.
async fn counted_turns(
    fake: &FakeAnthropic,
    cfg: HarnessConfig,
    turns: usize,
) -> (World, String, Vec<agentd_session::StoredEvent>) {
    let cfg = HarnessConfig {
        compaction: Some(Compaction {
            at_tokens: 300,
            keep_messages: 2,
        }),
        ..cfg
    };
    let w = World::start(
        &fake.base_url(),
        json!({"name": "a", "model": "claude-test"}),
        cfg,
    )
    .await;
    let sid = w.session().await;
    for i in 0..turns {
        w.say(&sid, &format!("turn number {i}")).await;
        w.settle(&sid, Duration::from_secs(5)).await;
    }
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    (w, sid, log)
}

#[tokio::test]
async fn a_long_session_is_compacted_and_keeps_working() {
    let fake = FakeAnthropic::start_fn(|body| {
        if is_compaction(body) {
            return FakeReply::text("SUMMARY: the user counted turns; all were answered.");
        }
        let n = body["messages"].as_array().unwrap().len();
        FakeReply::text(format!(
            "reply to a context of {n} messages, padded to take room: {}",
            "x".repeat(200)
        ))
    })
    .await;
    let prices = agentd_models::Prices::parse(
        "test",
        "prices:\n  claude-test: {input: 10000, output: 30000}\n",
    )
    .unwrap();
    let cfg = HarnessConfig {
        prices: prices.clone(),
        ..HarnessConfig::default()
    };
    let (w, sid, log) = counted_turns(&fake, cfg, 8).await;
    let compactions = log
        .iter()
        .filter(|e| matches!(e.event.body, EventBody::AgentThreadContextCompacted {}))
        .count();
    assert!(compactions >= 1, "the context was never compacted");
    // The log keeps every turn and every answer.
    let users = log
        .iter()
        .filter(|e| matches!(e.event.body, EventBody::UserMessage { .. }))
        .count();
    let answers = log
        .iter()
        .filter(|e| matches!(e.event.body, EventBody::AgentMessage { .. }))
        .count();
    assert_eq!((users, answers), (8, 8));
    // Writing the summary cost tokens too, and the session's usage counts them.
    let turns: u64 = log
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::SpanModelRequestEnd { model_usage, .. } => Some(model_usage.input_tokens),
            _ => None,
        })
        .sum();
    let summaries: u64 = log
        .iter()
        .filter_map(|e| match &e.private {
            Some(agentd_session::Private::Compaction { usage, .. }) => Some(usage.input_tokens),
            _ => None,
        })
        .sum();
    assert!(summaries > 0);
    let session = w.store.get_session(&w.ws, &sid).await.unwrap();
    assert_eq!(session.usage.input_tokens, turns + summaries);
    // And its list cost: every call priced by the table, the summaries' included.
    let mut pico = 0;
    for e in &log {
        match (&e.event.body, &e.private) {
            (
                EventBody::SpanModelRequestEnd { model_usage, .. },
                Some(agentd_session::Private::Cost { pico_usd, .. }),
            ) => {
                assert_eq!(*pico_usd, prices.cost("claude-test", model_usage));
                pico += pico_usd;
            }
            (
                _,
                Some(agentd_session::Private::Compaction {
                    usage, pico_usd, ..
                }),
            ) => {
                assert!(*pico_usd > 0);
                assert_eq!(*pico_usd, prices.cost("claude-test", usage));
                pico += pico_usd;
            }
            _ => {}
        }
    }
    assert_eq!(
        session.usage.list_cost,
        Some(agentd_wire::usage::MonetaryAmount::usd_from_pico(pico))
    );
    // The last request starts from the summary, holds the latest turn, and not the first.
    let last = fake
        .requests()
        .into_iter()
        .rfind(|b| !is_compaction(b))
        .unwrap();
    let msgs = last["messages"].as_array().unwrap();
    assert!(
        msgs[0]
            .to_string()
            .contains("SUMMARY: the user counted turns"),
        "{}",
        msgs[0]
    );
    assert!(last.to_string().contains("turn number 7"));
    assert!(!last.to_string().contains("turn number 0"));
    // Roles still alternate, as the Messages API requires.
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert!(roles.windows(2).all(|r| r[0] != r[1]), "{roles:?}");
    assert_eq!(roles[0], "user");
}

#[tokio::test]
async fn a_compaction_that_fails_once_is_retried_without_a_trace_in_the_log() {
    let failed = std::sync::atomic::AtomicBool::new(false);
    let fake = FakeAnthropic::start_fn(move |body| {
        if is_compaction(body) {
            if !failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return FakeReply::error(529, "overloaded_error", "busy");
            }
            return FakeReply::text("SUMMARY: the user counted turns.");
        }
        FakeReply::text(format!(
            "an answer padded to take room: {}",
            "x".repeat(200)
        ))
    })
    .await;
    let cfg = HarnessConfig {
        retry: agentd_brain::RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        },
        ..HarnessConfig::default()
    };
    let (_w, _sid, log) = counted_turns(&fake, cfg, 6).await;
    // The failed request is made again at once, not at the next turn.
    let kinds: Vec<bool> = fake.requests().iter().map(is_compaction).collect();
    let first = kinds
        .iter()
        .position(|c| *c)
        .expect("no compaction was asked for");
    assert_eq!(
        kinds.get(first + 1),
        Some(&true),
        "the failed compaction was not retried: {kinds:?}"
    );
    assert!(
        log.iter()
            .any(|e| matches!(e.event.body, EventBody::AgentThreadContextCompacted {})),
        "the context was never compacted"
    );
    // The retry shows in tracing only: the session's log has no error.
    assert!(
        !log.iter()
            .any(|e| matches!(e.event.body, EventBody::SessionError { .. })),
        "a compaction retry was logged"
    );
}
