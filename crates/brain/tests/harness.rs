//! The harness against the real SQLite store and a fake Messages API on loopback.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use agentd_brain::{Agents, Harness, HarnessConfig, Previews, RetryPolicy, Runner};
use agentd_models::{Registry, RegistryConfig};
use agentd_session::{NewEvent, SessionLog, StoredEvent, events};
use agentd_store::{NewSession, Store};
use agentd_testkit::{FakeAnthropic, FakeReply};
use agentd_wire::agent::{AgentTag, CreateAgent};
use agentd_wire::environment::{EnvironmentConfig, EnvironmentTag};
use agentd_wire::session::SessionAgent;
use agentd_wire::{ContentBlock, Environment, EventBody, SessionStatus, StopReason};

struct StoreAgents(Store);

#[async_trait::async_trait]
impl Agents for StoreAgents {
    async fn session_agent(&self, id: &str) -> agentd_brain::Result<SessionAgent> {
        self.0
            .load_session(id)
            .await
            .map(|s| s.agent)
            .map_err(|_| agentd_brain::Error::SessionNotFound(id.into()))
    }
}

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    runner: Runner,
    ws: String,
    env: String,
    agent: SessionAgent,
}

async fn world(fake: &FakeAnthropic) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let ws = store.register_key("k", "default").await.unwrap().id;
    let spec = serde_json::from_value::<CreateAgent>(json!({
        "name": "a", "model": "claude-test", "system": "be brief",
        "tools": [{"type": "custom", "name": "lookup", "description": "look up",
                   "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]
    }))
    .unwrap()
    .into_spec();
    let agent = store.create_agent(&ws, spec).await.unwrap();
    let env = store
        .create_environment(&ws, |id, now| Environment {
            id,
            kind: EnvironmentTag::Environment,
            name: "e".into(),
            description: None,
            config: EnvironmentConfig::default(),
            metadata: BTreeMap::new(),
            scope: None,
            created_at: now,
            updated_at: now,
            archived_at: None,
        })
        .await
        .unwrap()
        .id;
    let models = Arc::new(Registry::new(RegistryConfig {
        anthropic_base_url: fake.base_url(),
        anthropic_api_key: Some("test-key".into()),
        scripts_dir: dir.path().join("scripts"),
    }));
    let harness = Harness::new(
        Arc::new(store.clone()),
        Arc::new(StoreAgents(store.clone())),
        models,
        Previews::default(),
        HarnessConfig {
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
            },
            ..HarnessConfig::default()
        },
    );
    World {
        _dir: dir,
        runner: Runner::new(harness),
        agent: SessionAgent {
            id: agent.id,
            kind: AgentTag::Agent,
            version: agent.version,
            spec: agent.spec,
        },
        store,
        ws,
        env,
    }
}

impl World {
    async fn session(&self) -> String {
        self.store
            .create_session(
                &self.ws,
                NewSession {
                    agent: self.agent.clone(),
                    environment_id: self.env.clone(),
                    title: None,
                    metadata: BTreeMap::new(),
                    vault_ids: vec![],
                },
                events(vec![]),
            )
            .await
            .unwrap()
            .id
    }

    /// What the API does for a user.message: log it with the move to running, then notify.
    async fn say(&self, sid: &str, text: &str) {
        self.store
            .append(
                sid,
                events(vec![
                    NewEvent::new(EventBody::UserMessage {
                        content: vec![ContentBlock::text(text)],
                    }),
                    NewEvent::new(EventBody::SessionStatusRunning {}),
                ]),
            )
            .await
            .unwrap();
        self.runner.notify(sid);
    }

    async fn idle(&self, sid: &str, within: Duration) -> Vec<StoredEvent> {
        let deadline = Instant::now() + within;
        loop {
            let head = self.store.head(sid).await.unwrap();
            if head.status == SessionStatus::Idle && self.runner.active() == 0 {
                return self.store.read(sid, 0, 10_000).await.unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "session {sid} not idle in {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
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
    let log = w.idle(&sid, Duration::from_secs(5)).await;
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
    let log = w.idle(&sid, Duration::from_secs(5)).await;
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
    w.store
        .append(
            &sid,
            events(vec![
                NewEvent::new(EventBody::UserCustomToolResult {
                    custom_tool_use_id: tool.event.id.clone(),
                    content: Some(vec![ContentBlock::text("rust is a language")]),
                    is_error: None,
                }),
                NewEvent::new(EventBody::SessionStatusRunning {}),
            ]),
        )
        .await
        .unwrap();
    w.runner.notify(&sid);
    let log = w.idle(&sid, Duration::from_secs(5)).await;
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
    w.store
        .append(
            &sid,
            events(vec![NewEvent::new(EventBody::UserInterrupt {
                session_thread_id: None,
            })]),
        )
        .await
        .unwrap();
    w.runner.interrupt(&sid);
    let log = w.idle(&sid, Duration::from_millis(1000)).await;
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
    let log = w.idle(&sid, Duration::from_secs(5)).await;
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
    let log = w.idle(&sid, Duration::from_secs(5)).await;
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
    let log = w.idle(&sid, Duration::from_secs(5)).await;
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
