//! Built-in tools through the harness: permissions, lazy provisioning, crash safety and
//! interrupts, with an in-process sandbox double (the real sandbox has its own tests in
//! agentd-hands, and the binary's tests run both together).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use agentd_brain::{HarnessConfig, RetryPolicy};
use agentd_hands::{Output, Provider, Sandbox, Spec};
use agentd_session::{NewEvent, StoredEvent, events};
use agentd_testkit::world::World;
use agentd_testkit::{FakeAnthropic, FakeReply};
use agentd_wire::event::{Confirmation, Permission};
use agentd_wire::{ContentBlock, EventBody, StopReason};

#[derive(Default)]
struct Recorder {
    provisions: AtomicUsize,
    calls: Mutex<Vec<(String, Value)>>,
}

struct FakeProvider(Arc<Recorder>);
struct FakeSandbox(Arc<Recorder>);

#[async_trait]
impl Provider for FakeProvider {
    async fn provision(&self, spec: &Spec) -> Result<Arc<dyn Sandbox>, agentd_hands::Error> {
        self.0.provisions.fetch_add(1, Ordering::SeqCst);
        // As every provider does: the workspace exists once a sandbox mounts it.
        std::fs::create_dir_all(&spec.workspace).unwrap();
        Ok(Arc::new(FakeSandbox(self.0.clone())))
    }
}

#[async_trait]
impl Sandbox for FakeSandbox {
    async fn execute(&self, name: &str, input: &Value) -> Output {
        self.0
            .calls
            .lock()
            .unwrap()
            .push((name.into(), input.clone()));
        if input["command"] == "hang" {
            std::future::pending::<()>().await;
        }
        Output::ok(format!(
            "ran {name} {}",
            input["command"].as_str().unwrap_or("")
        ))
    }
    fn alive(&self) -> bool {
        true
    }
    async fn release(&self) {}
}

async fn world(fake: &FakeAnthropic, toolset: Value) -> (World, Arc<Recorder>) {
    world_with(fake, toolset, None).await
}

async fn world_with(
    fake: &FakeAnthropic,
    toolset: Value,
    web_search: Option<String>,
) -> (World, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let agent = json!({"name": "a", "model": "claude-test", "tools": [toolset]});
    let cfg = HarnessConfig {
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(10),
        },
        web_search,
        ..HarnessConfig::default()
    };
    let w = World::start_with(
        &fake.base_url(),
        agent,
        cfg,
        Some(Arc::new(FakeProvider(rec.clone()))),
    )
    .await;
    (w, rec)
}

/// A session whose model called bash with a command that never returns, once the call runs.
async fn hanging_call() -> (FakeAnthropic, World, Arc<Recorder>, String) {
    let fake = FakeAnthropic::start(vec![FakeReply::tool_use(
        "bash",
        json!({"command": "hang"}),
    )])
    .await;
    let (w, rec) = world(&fake, json!({"type": "agent_toolset_20260401"})).await;
    let sid = w.session().await;
    w.say(&sid, "go").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while rec.calls.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the call never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (fake, w, rec, sid)
}

fn types(log: &[StoredEvent]) -> Vec<&'static str> {
    log.iter().map(|e| e.event.body.type_name()).collect()
}

fn results(log: &[StoredEvent]) -> Vec<(String, bool)> {
    log.iter()
        .filter_map(|e| match &e.event.body {
            EventBody::AgentToolResult {
                content, is_error, ..
            } => Some((
                ContentBlock::join_text(content.as_deref().unwrap_or_default()),
                is_error.unwrap_or(false),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_agent_with_sandbox_tools_is_told_where_its_deliverables_go() {
    let fake = FakeAnthropic::start(vec![FakeReply::text("a"), FakeReply::text("b")]).await;
    let (w, _) = world(&fake, json!({"type": "agent_toolset_20260401"})).await;
    let sid = w.session().await;
    w.say(&sid, "hello").await;
    w.settle(&sid, Duration::from_secs(5)).await;
    let bare = w
        .session_for(json!({"name": "b", "model": "claude-test", "system": "Be brief."}))
        .await;
    w.say(&bare, "hello").await;
    w.settle(&bare, Duration::from_secs(5)).await;
    let system = |i: usize| fake.requests()[i]["system"].to_string();
    assert!(system(0).contains("/mnt/session/outputs/"), "{}", system(0));
    // No sandbox tool, no outputs directory to speak of: the agent's prompt as it is.
    assert!(system(1).contains("Be brief."), "{}", system(1));
    assert!(!system(1).contains("/mnt/session"), "{}", system(1));
}

#[tokio::test]
async fn an_allowed_tool_runs_in_a_sandbox_made_on_first_use() {
    let fake = FakeAnthropic::start(vec![
        FakeReply::text("no tools yet"),
        FakeReply::tool_use("bash", json!({"command": "ls"})),
        FakeReply::text("listed"),
    ])
    .await;
    let (w, rec) = world(&fake, json!({"type": "agent_toolset_20260401"})).await;
    let sid = w.session().await;
    w.say(&sid, "hello").await;
    w.settle(&sid, Duration::from_secs(5)).await;
    assert_eq!(
        rec.provisions.load(Ordering::SeqCst),
        0,
        "no sandbox before the first tool call"
    );
    // The model is offered the enabled built-in tools.
    let names: Vec<String> = fake.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["bash", "read", "write", "edit", "glob", "grep", "web_fetch"]
    );

    w.say(&sid, "list files").await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    assert_eq!(rec.provisions.load(Ordering::SeqCst), 1);
    let tool = log
        .iter()
        .find(|e| matches!(e.event.body, EventBody::AgentToolUse { .. }))
        .unwrap();
    assert!(matches!(
        &tool.event.body,
        EventBody::AgentToolUse {
            evaluated_permission: Some(Permission::Allow),
            ..
        }
    ));
    let t = types(&log);
    let at = |name: &str| t.iter().position(|x| *x == name).unwrap();
    assert!(at("agent.tool_use") < at("internal.tool_started"));
    assert!(at("internal.tool_started") < at("agent.tool_result"));
    assert_eq!(results(&log), vec![("ran bash ls".to_owned(), false)]);
    let third = &fake.requests()[2];
    let last = third["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["content"][0]["type"], "tool_result");
    assert_eq!(last["content"][0]["tool_use_id"], tool.event.id.as_str());
    assert!(matches!(
        &log.last().unwrap().event.body,
        EventBody::SessionStatusIdle {
            stop_reason: StopReason::EndTurn,
            ..
        }
    ));
}

#[tokio::test]
async fn always_ask_waits_for_the_user_who_may_allow_or_deny() {
    let fake = FakeAnthropic::start(vec![
        FakeReply::tool_use("bash", json!({"command": "rm -rf build"})),
        FakeReply::tool_use("bash", json!({"command": "make"})),
        FakeReply::text("ok"),
    ])
    .await;
    let toolset = json!({"type": "agent_toolset_20260401",
        "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}]});
    let (w, rec) = world(&fake, toolset).await;
    let sid = w.session().await;
    w.say(&sid, "clean and build").await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    let ask = log
        .iter()
        .rev()
        .find(|e| matches!(e.event.body, EventBody::AgentToolUse { .. }))
        .unwrap();
    assert!(matches!(
        &ask.event.body,
        EventBody::AgentToolUse {
            evaluated_permission: Some(Permission::Ask),
            ..
        }
    ));
    assert!(matches!(&log.last().unwrap().event.body,
        EventBody::SessionStatusIdle { stop_reason: StopReason::RequiresAction { event_ids }, .. } if *event_ids == vec![ask.event.id.clone()]));
    assert!(
        rec.calls.lock().unwrap().is_empty(),
        "nothing runs before the user answers"
    );

    w.send(
        &sid,
        vec![EventBody::UserToolConfirmation {
            tool_use_id: ask.event.id.clone(),
            result: Confirmation::Deny,
            deny_message: Some("never delete build".into()),
            session_thread_id: None,
        }],
    )
    .await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    assert!(rec.calls.lock().unwrap().is_empty());
    let r = results(&log);
    assert!(r[0].1 && r[0].0.contains("never delete build"), "{r:?}");
    let allow = log
        .iter()
        .rev()
        .find(|e| matches!(e.event.body, EventBody::AgentToolUse { .. }))
        .unwrap();
    assert_ne!(allow.event.id, ask.event.id);
    w.send(
        &sid,
        vec![EventBody::UserToolConfirmation {
            tool_use_id: allow.event.id.clone(),
            result: Confirmation::Allow,
            deny_message: None,
            session_thread_id: None,
        }],
    )
    .await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    assert_eq!(rec.calls.lock().unwrap().len(), 1);
    assert_eq!(results(&log)[1], ("ran bash make".to_owned(), false));
    assert!(matches!(
        &log.last().unwrap().event.body,
        EventBody::SessionStatusIdle {
            stop_reason: StopReason::EndTurn,
            ..
        }
    ));
}

#[tokio::test]
async fn a_call_cut_short_by_a_crash_is_reported_not_run_again() {
    let fake = FakeAnthropic::start(vec![FakeReply::text("I will check the state first")]).await;
    let (w, rec) = world(&fake, json!({"type": "agent_toolset_20260401"})).await;
    let sid = w.session().await;
    // The log a process leaves when it dies while a tool runs.
    let call = NewEvent::new(EventBody::AgentToolUse {
        name: "bash".into(),
        input: json!({"command": "deploy"}).as_object().unwrap().clone(),
        evaluated_permission: Some(Permission::Allow),
        session_thread_id: None,
    });
    let call_id = call.id.clone();
    let start = NewEvent::new(EventBody::SpanModelRequestStart {});
    let start_id = start.id.clone();
    w.store
        .append(
            &sid,
            events(vec![
                NewEvent::new(EventBody::UserMessage {
                    content: vec![ContentBlock::text("deploy")],
                }),
                NewEvent::new(EventBody::SessionStatusRunning {}),
                start,
                call,
                NewEvent::new(EventBody::SpanModelRequestEnd {
                    model_request_start_id: start_id,
                    is_error: Some(false),
                    model_usage: Default::default(),
                }),
                NewEvent::new(EventBody::ToolStarted {
                    tool_use_id: call_id.clone(),
                }),
            ]),
        )
        .await
        .unwrap();
    w.runner.notify(&sid);
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    assert!(
        rec.calls.lock().unwrap().is_empty(),
        "an interrupted call must not run again by itself"
    );
    let r = results(&log);
    assert_eq!(r.len(), 1);
    assert!(r[0].1 && r[0].0.contains("interrupted"), "{r:?}");
    let req = &fake.requests()[0];
    let last = req["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["content"][0]["tool_use_id"], call_id.as_str());
    assert_eq!(last["content"][0]["is_error"], true);
}

#[tokio::test]
async fn an_interrupt_stops_a_running_tool() {
    let (_fake, w, _rec, sid) = hanging_call().await;
    let t0 = Instant::now();
    w.interrupt(&sid).await;
    let log = w.settle(&sid, Duration::from_secs(2)).await;
    assert!(t0.elapsed() < Duration::from_millis(500));
    let r = results(&log);
    assert!(r[0].1 && r[0].0.contains("Interrupted"), "{r:?}");
}

#[tokio::test]
async fn an_unknown_or_disabled_tool_is_denied_with_a_reason() {
    let fake = FakeAnthropic::start(vec![
        FakeReply::tool_use("bash", json!({"command": "ls"})),
        FakeReply::text("understood"),
    ])
    .await;
    let toolset =
        json!({"type": "agent_toolset_20260401", "configs": [{"name": "bash", "enabled": false}]});
    let (w, rec) = world(&fake, toolset).await;
    let sid = w.session().await;
    w.say(&sid, "go").await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    assert!(rec.calls.lock().unwrap().is_empty());
    let r = results(&log);
    assert!(r[0].1 && r[0].0.contains("not enabled"), "{r:?}");
    let offered = fake.requests()[0]["tools"].to_string();
    assert!(!offered.contains("\"bash\""));
}

/// A SearXNG-shaped backend on loopback answering every search with two hits.
async fn searx() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(
                req.starts_with("GET /search?q=rust+sandboxes&format=json"),
                "{req}"
            );
            let body = r#"{"results":[{"title":"Sandboxing in Rust","url":"https://example.com/a","content":"namespaces and seccomp"},{"title":"bubblewrap","url":"https://example.com/b","content":"unprivileged sandboxing tool"}]}"#;
            let _ = s
                .write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes())
                .await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn web_search_uses_the_configured_backend_or_says_there_is_none() {
    let fake = FakeAnthropic::start(vec![
        FakeReply::tool_use("web_search", json!({"query": "rust sandboxes"})),
        FakeReply::text("found"),
    ])
    .await;
    let (w, _) = world_with(
        &fake,
        json!({"type": "agent_toolset_20260401"}),
        Some(searx().await),
    )
    .await;
    let sid = w.session().await;
    w.say(&sid, "search").await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    let r = results(&log);
    assert!(
        !r[0].1
            && r[0].0.contains("1. Sandboxing in Rust")
            && r[0].0.contains("https://example.com/b"),
        "{r:?}"
    );
    assert!(
        fake.requests()[0]["tools"]
            .to_string()
            .contains("web_search")
    );

    let fake = FakeAnthropic::start(vec![
        FakeReply::tool_use("web_search", json!({"query": "anything"})),
        FakeReply::text("ok"),
    ])
    .await;
    let (w, _) = world(&fake, json!({"type": "agent_toolset_20260401"})).await;
    let sid = w.session().await;
    w.say(&sid, "search").await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    assert!(
        !fake.requests()[0]["tools"]
            .to_string()
            .contains("web_search"),
        "not offered without a backend"
    );
    let r = results(&log);
    assert!(
        r[0].1 && r[0].0.contains("no search backend is configured"),
        "{r:?}"
    );
}

#[tokio::test]
async fn an_idle_sandbox_is_released_and_a_fresh_one_made_on_the_next_call() {
    let fake = FakeAnthropic::start(vec![
        FakeReply::tool_use("bash", json!({"command": "one"})),
        FakeReply::text("a"),
        FakeReply::tool_use("bash", json!({"command": "two"})),
        FakeReply::text("b"),
    ])
    .await;
    let (w, rec) = world(&fake, json!({"type": "agent_toolset_20260401"})).await;
    let sid = w.session().await;
    w.say(&sid, "first").await;
    w.settle(&sid, Duration::from_secs(5)).await;
    let sandboxes = w.sandboxes().unwrap();
    assert_eq!(sandboxes.count(), 1);
    assert_eq!(sandboxes.release_idle(Duration::ZERO).await, 1);
    assert_eq!(sandboxes.count(), 0);
    w.say(&sid, "second").await;
    w.settle(&sid, Duration::from_secs(5)).await;
    assert_eq!(rec.provisions.load(Ordering::SeqCst), 2);
    assert_eq!(rec.calls.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_workspace_gone_from_this_host_is_reported_once_and_made_afresh() {
    let fake = FakeAnthropic::start(vec![
        FakeReply::tool_use("bash", json!({"command": "one"})),
        FakeReply::text("a"),
        FakeReply::tool_use("bash", json!({"command": "two"})),
        FakeReply::tool_use("bash", json!({"command": "three"})),
        FakeReply::text("b"),
    ])
    .await;
    let (w, rec) = world(&fake, json!({"type": "agent_toolset_20260401"})).await;
    let sid = w.session().await;
    w.say(&sid, "first").await;
    w.settle(&sid, Duration::from_secs(5)).await;
    // As if the session had moved to a host that never had its workspace.
    let sandboxes = w.sandboxes().unwrap();
    sandboxes.release_idle(Duration::ZERO).await;
    std::fs::remove_dir_all(sandboxes.workspace(&sid)).unwrap();
    w.say(&sid, "second").await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    let r = results(&log);
    assert_eq!(r.len(), 3, "{r:?}");
    assert!(
        r[1].1 && r[1].0.contains("workspace of this session was lost"),
        "{r:?}"
    );
    assert!(!r[2].1, "{r:?}");
    let calls: Vec<_> = rec
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.1["command"].clone())
        .collect();
    assert_eq!(
        calls,
        vec![json!("one"), json!("three")],
        "the reported call did not run"
    );
    assert!(sandboxes.workspace(&sid).is_dir());
}

#[tokio::test]
async fn a_workspace_over_its_disk_quota_refuses_writes_until_files_go() {
    let fake = FakeAnthropic::start(vec![
        FakeReply::tool_use("write", json!({"file_path": "a.txt", "content": "x"})),
        FakeReply::tool_use("bash", json!({"command": "rm big"})),
        FakeReply::text("cleaned"),
    ])
    .await;
    let (w, rec) = world(&fake, json!({"type": "agent_toolset_20260401"})).await;
    let sid = w.session().await;
    let sandboxes = w.sandboxes().unwrap();
    // The world's quota is 1 MiB; something already filled the workspace past it.
    std::fs::create_dir_all(sandboxes.workspace(&sid)).unwrap();
    std::fs::write(sandboxes.workspace(&sid).join("big"), vec![0u8; 2 << 20]).unwrap();
    w.say(&sid, "write something").await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    let r = results(&log);
    assert!(r[0].1 && r[0].0.contains("over its 1 MiB limit"), "{r:?}");
    // bash still runs (the fake does not delete, so the note says it is still over).
    assert!(r[1].0.starts_with("ran bash rm big"), "{r:?}");
    assert!(r[1].0.contains("over its 1 MiB limit"), "{r:?}");
    let calls = rec.calls.lock().unwrap();
    assert_eq!(
        calls.len(),
        1,
        "the refused write never reached the sandbox"
    );
    assert_eq!(calls[0].0, "bash");
}

#[tokio::test]
async fn an_idle_sweep_never_takes_a_sandbox_in_the_middle_of_a_call() {
    let (_fake, w, _rec, sid) = hanging_call().await;
    let sandboxes = w.sandboxes().unwrap();
    assert_eq!(
        sandboxes.release_idle(Duration::ZERO).await,
        0,
        "a working sandbox was released"
    );
    assert_eq!(sandboxes.count(), 1);
    w.interrupt(&sid).await;
    w.settle(&sid, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn past_the_sandbox_caps_a_new_sandbox_is_refused_at_once_with_a_reason() {
    use agentd_brain::sandboxes::Caps;
    let dir = tempfile::tempdir().unwrap();
    let sandboxes = agentd_brain::Sandboxes::new(
        Arc::new(FakeProvider(Arc::default())),
        dir.path().to_owned(),
        agentd_hands::Limits::default(),
    )
    .with_caps(Caps {
        total: 2,
        per_workspace: 1,
    });
    let get = |log: &'static str, session: &'static str| {
        let sandboxes = &sandboxes;
        async move {
            tokio::time::timeout(
                Duration::from_secs(5),
                sandboxes.get(
                    log,
                    session,
                    agentd_egress::Policy::none(),
                    agentd_brain::sandboxes::Provision::default(),
                ),
            )
            .await
            .expect("a refusal must not wait")
        }
    };
    // Every sandbox is at work (a call is running in each).
    assert!(get("sesn_a", "sesn_a").await.is_ok());
    // A worker thread of the same session would be a second sandbox over its workspace.
    let e = get("sthr_a", "sesn_a").await.err().unwrap().to_string();
    assert!(e.contains("this session already has 1 sandboxes"), "{e}");
    assert!(get("sesn_b", "sesn_b").await.is_ok());
    let e = get("sesn_c", "sesn_c").await.err().unwrap().to_string();
    assert!(e.contains("running 2 sandboxes, the most it allows"), "{e}");
    // The session that has one keeps using it.
    assert!(get("sesn_a", "sesn_a").await.is_ok());
    // An idle sandbox makes way for a new one rather than holding its place until swept.
    sandboxes.done("sesn_b");
    assert!(get("sesn_c", "sesn_c").await.is_ok());
    assert_eq!(sandboxes.count(), 2);
}
