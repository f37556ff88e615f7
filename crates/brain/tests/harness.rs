//! The harness against the real SQLite store and a fake Messages API on loopback.

use std::time::{Duration, Instant};

use serde_json::json;

use agentd_brain::{HarnessConfig, RetryPolicy};
use agentd_session::{NewEvent, StoredEvent, events};
use agentd_testkit::world::World;
use agentd_testkit::{FakeAnthropic, FakeReply};
use agentd_wire::{ContentBlock, EventBody, SessionStatus, StopReason};

async fn world(fake: &FakeAnthropic) -> World {
    let agent = json!({
        "name": "a", "model": "claude-test", "system": "be brief",
        "tools": [{"type": "custom", "name": "lookup", "description": "look up",
                   "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    });
    let cfg = HarnessConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
        },
        ..HarnessConfig::default()
    };
    World::start(&fake.base_url(), agent, cfg).await
}

fn types(log: &[StoredEvent]) -> Vec<&'static str> {
    log.iter().map(|e| e.event.body.type_name()).collect()
}

#[tokio::test]
async fn a_turn_logs_its_span_message_usage_and_rest() {
    let fake = FakeAnthropic::start(vec![FakeReply::text("hello there")]).await;
    let w = world(&fake).await;
    let sid = w.session().await;
    w.say(&sid, "hi").await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    assert_eq!(
        types(&log),
        [
            "user.message",
            "session.status_running",
            "span.model_request_start",
            "agent.message",
            "span.model_request_end",
            "session.usage",
            "session.status_idle"
        ]
    );
    let EventBody::SpanModelRequestEnd {
        model_request_start_id,
        model_usage,
        ..
    } = &log[4].event.body
    else {
        panic!()
    };
    assert_eq!(model_request_start_id, &log[2].event.id);
    assert!(model_usage.output_tokens > 0);
    let req = &fake.requests()[0];
    assert_eq!(req["model"], "claude-test");
    assert_eq!(req["messages"][0]["content"][0]["text"], "hi");
    assert_eq!(req["tools"][0]["name"], "lookup");
    let s = w.store.get_session(&w.ws, &sid).await.unwrap();
    assert_eq!(s.usage.output_tokens, model_usage.output_tokens);
}

#[tokio::test]
async fn a_custom_tool_call_rests_until_its_result_then_continues() {
    let fake = FakeAnthropic::start(vec![
        FakeReply::tool_use("lookup", json!({"q": "rust"})),
        FakeReply::text("found it"),
    ])
    .await;
    let w = world(&fake).await;
    let sid = w.session().await;
    w.say(&sid, "look up rust").await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    let tool = log
        .iter()
        .find(|e| matches!(e.event.body, EventBody::AgentCustomToolUse { .. }))
        .unwrap();
    let EventBody::SessionStatusIdle { stop_reason, .. } = &log.last().unwrap().event.body else {
        panic!()
    };
    assert_eq!(
        stop_reason,
        &StopReason::RequiresAction {
            event_ids: vec![tool.event.id.clone()]
        }
    );
    w.send(
        &sid,
        vec![EventBody::UserCustomToolResult {
            custom_tool_use_id: tool.event.id.clone(),
            content: Some(vec![ContentBlock::text("rust is a language")]),
            is_error: None,
            session_thread_id: None,
        }],
    )
    .await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    assert!(matches!(
        &log.last().unwrap().event.body,
        EventBody::SessionStatusIdle {
            stop_reason: StopReason::EndTurn,
            ..
        }
    ));
    let second = &fake.requests()[1];
    let msgs = second["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
    assert_eq!(msgs[1]["content"][0]["id"], tool.event.id.as_str());
    assert_eq!(msgs[2]["content"][0]["type"], "tool_result");
    assert_eq!(
        msgs[2]["content"][0]["content"][0]["text"],
        "rust is a language"
    );
}

#[tokio::test]
async fn an_interrupt_cancels_the_upstream_request_at_once() {
    let fake = FakeAnthropic::start(vec![FakeReply::Hang]).await;
    let w = world(&fake).await;
    let sid = w.session().await;
    w.say(&sid, "think forever").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.active_streams() == 0 {
        assert!(Instant::now() < deadline, "upstream never called");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t0 = Instant::now();
    w.interrupt(&sid).await;
    let log = w.settle(&sid, Duration::from_millis(1000)).await;
    let took = t0.elapsed();
    assert!(fake.wait_no_active_streams(Duration::from_secs(1)).await);
    assert!(took < Duration::from_millis(500), "interrupt took {took:?}");
    assert!(!types(&log).contains(&"agent.message"));
    let ends: Vec<_> = log
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::SpanModelRequestEnd { is_error, .. } => Some(*is_error),
            _ => None,
        })
        .collect();
    assert_eq!(ends, vec![Some(true)]);
}

#[tokio::test]
async fn a_request_left_open_by_a_crash_is_made_again_under_the_same_span() {
    let fake = FakeAnthropic::start(vec![FakeReply::text("complete answer")]).await;
    let w = world(&fake).await;
    let sid = w.session().await;
    // The log a process leaves when it dies mid-stream: the start is durable, nothing after.
    let start = NewEvent::new(EventBody::SpanModelRequestStart {});
    let start_id = start.id.clone();
    w.store
        .append(
            &sid,
            events(vec![
                NewEvent::new(EventBody::UserMessage {
                    content: vec![ContentBlock::text("q")],
                }),
                NewEvent::new(EventBody::SessionStatusRunning {}),
                start,
            ]),
        )
        .await
        .unwrap();
    w.runner.notify(&sid);
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    let t = types(&log);
    assert_eq!(
        t.iter()
            .filter(|t| **t == "span.model_request_start")
            .count(),
        1
    );
    assert_eq!(t.iter().filter(|t| **t == "agent.message").count(), 1);
    assert!(log.iter().any(|e| matches!(&e.event.body,
        EventBody::SpanModelRequestEnd { model_request_start_id, is_error: Some(false), .. } if *model_request_start_id == start_id)));
    assert!(log.windows(2).all(|p| p[1].seq == p[0].seq + 1));
}

#[tokio::test]
async fn a_request_made_again_after_a_message_arrived_answers_that_message_before_resting() {
    let fake = FakeAnthropic::start(vec![
        FakeReply::text("to the first"),
        FakeReply::text("to the second"),
    ])
    .await;
    let w = world(&fake).await;
    let sid = w.session().await;
    // A process died mid-request, after which a second message arrived.
    let say = |t: &str| {
        NewEvent::new(EventBody::UserMessage {
            content: vec![ContentBlock::text(t)],
        })
    };
    w.store
        .append(
            &sid,
            events(vec![
                say("first"),
                NewEvent::new(EventBody::SessionStatusRunning {}),
                NewEvent::new(EventBody::SpanModelRequestStart {}),
                say("second"),
            ]),
        )
        .await
        .unwrap();
    w.runner.notify(&sid);
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    let t = types(&log);
    // One rest, at the end: never idle while "second" waits for its answer.
    assert_eq!(
        t.iter().filter(|t| **t == "session.status_idle").count(),
        1,
        "{t:?}"
    );
    assert_eq!(t.last(), Some(&"session.status_idle"));
    let replies: Vec<_> = log
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::AgentMessage { content } => match &content[0] {
                ContentBlock::Text { text } => Some(text.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(replies, ["to the first", "to the second"]);
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn overload_is_retried_then_exhausted() {
    let fake = FakeAnthropic::start(vec![
        FakeReply::error(529, "overloaded_error", "busy"),
        FakeReply::error(529, "overloaded_error", "busy"),
        FakeReply::text("finally"),
    ])
    .await;
    let w = world(&fake).await;
    let sid = w.session().await;
    w.say(&sid, "hi").await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    let errors: Vec<_> = log
        .iter()
        .filter_map(|e| match &e.event.body {
            EventBody::SessionError { error } => Some(error.retry_status),
            _ => None,
        })
        .collect();
    use agentd_wire::event::RetryStatus;
    assert_eq!(errors, vec![RetryStatus::Retrying, RetryStatus::Retrying]);
    assert!(types(&log).contains(&"agent.message"));

    // Every attempt fails: the third (the last allowed) exhausts the retries.
    let fake = FakeAnthropic::start(vec![FakeReply::error(529, "overloaded_error", "busy")]).await;
    let w = world(&fake).await;
    let sid = w.session().await;
    w.say(&sid, "hi").await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    assert_eq!(fake.request_count(), 3);
    assert!(matches!(
        &log.last().unwrap().event.body,
        EventBody::SessionStatusIdle {
            stop_reason: StopReason::RetriesExhausted,
            ..
        }
    ));
}

#[tokio::test]
async fn a_slow_upstream_for_one_session_does_not_hold_up_another() {
    let fake = FakeAnthropic::start_fn(|body| {
        if body.to_string().contains("slow") {
            FakeReply::Hang
        } else {
            FakeReply::text("fast")
        }
    })
    .await;
    let w = world(&fake).await;
    let slow = w.session().await;
    let fast = w.session().await;
    w.say(&slow, "slow please").await;
    let t0 = Instant::now();
    w.say(&fast, "quick").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if w.store.head(&fast).await.unwrap().status == SessionStatus::Idle {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert_eq!(
        w.store.head(&slow).await.unwrap().status,
        SessionStatus::Running
    );
}
