//! Worker threads through the harness: a thread's work and reply, driven by appending what a
//! coordinator's `start_thread` appends (the API and coordinator tools have their end-to-end
//! tests with the SDK).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use agentd_brain::HarnessConfig;
use agentd_hands::{Output, Provider, Sandbox, Spec};
use agentd_models::RegistryConfig;
use agentd_session::{NewEvent, Private, StoredEvent, events};
use agentd_testkit::world::World;
use agentd_wire::agent::SessionAgent;
use agentd_wire::agent::{AgentTag, CreateAgent};
use agentd_wire::{ContentBlock, EventBody, ids};

/// Records the workspace each sandbox mounts.
#[derive(Default)]
struct Mounts(Mutex<Vec<std::path::PathBuf>>);

struct FakeProvider(Arc<Mounts>);
struct FakeSandbox;

#[async_trait]
impl Provider for FakeProvider {
    async fn provision(&self, spec: &Spec) -> Result<Arc<dyn Sandbox>, agentd_hands::Error> {
        self.0.0.lock().unwrap().push(spec.workspace.clone());
        Ok(Arc::new(FakeSandbox))
    }
}

#[async_trait]
impl Sandbox for FakeSandbox {
    async fn execute(&self, name: &str, _: &Value) -> Output {
        Output::ok(format!("ran {name}"))
    }
    fn alive(&self) -> bool {
        true
    }
    async fn release(&self) {}
}

async fn world(mounts: &Arc<Mounts>) -> World {
    World::start_with_registry(
        RegistryConfig::default(),
        json!({"name": "lead", "model": "scripted/echo"}),
        HarnessConfig::default(),
        Some(Arc::new(FakeProvider(mounts.clone()))),
    )
    .await
}

fn agent(body: Value) -> SessionAgent {
    SessionAgent {
        id: "agent_worker".into(),
        kind: AgentTag::Agent,
        version: 1,
        spec: serde_json::from_value::<CreateAgent>(body)
            .unwrap()
            .into_spec(),
    }
}

/// What `start_thread` logs: the thread, its task, delivered into its own log. `then` goes
/// into the thread's log right after the task.
async fn start_thread(w: &World, sid: &str, worker: SessionAgent, then: Vec<EventBody>) -> String {
    let tid = ids::new(ids::Kind::Thread);
    let task = vec![ContentBlock::text("do the thing")];
    let mut batch = vec![
        NewEvent::new(EventBody::SessionStatusRunning {}),
        NewEvent::new(EventBody::SessionThreadCreated {
            session_thread_id: tid.clone(),
            agent_name: "worker".into(),
        })
        .with_private(Private::Thread {
            agent: Box::new(worker),
        }),
        NewEvent::new(EventBody::AgentThreadMessageSent {
            to_session_thread_id: tid.clone(),
            to_agent_name: Some("worker".into()),
            content: task.clone(),
        }),
        NewEvent::new(EventBody::AgentThreadMessageReceived {
            from_session_thread_id: ids::primary_thread(sid),
            from_agent_name: None,
            content: task,
        })
        .to(tid.clone()),
    ];
    batch.extend(then.into_iter().map(|b| NewEvent::new(b).to(tid.clone())));
    w.store.append(sid, events(batch)).await.unwrap();
    w.runner.notify(&tid);
    tid
}

fn replies(log: &[StoredEvent]) -> Vec<String> {
    log.iter()
        .filter_map(|e| match &e.event.body {
            EventBody::AgentThreadMessageReceived { content, .. } => {
                Some(ContentBlock::join_text(content))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_worker_interrupted_before_its_first_turn_still_answers() {
    let mounts = Arc::default();
    let w = world(&mounts).await;
    let sid = w.session().await;
    let worker = agent(json!({"name": "worker", "model": "scripted/echo"}));
    let interrupt = EventBody::UserInterrupt {
        session_thread_id: None,
    };
    start_thread(&w, &sid, worker, vec![interrupt]).await;
    // Without an answer the coordinator would wait for it forever.
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    let r = replies(&log);
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].contains("interrupted before it replied"), "{r:?}");
}

#[tokio::test]
async fn a_workers_tools_run_over_the_sessions_workspace() {
    let mounts: Arc<Mounts> = Arc::default();
    let w = world(&mounts).await;
    std::fs::write(
        w.scripts_dir().join("worker.yaml"),
        "turns:\n  - tool_use: {name: bash, input: {command: ls}}\n  - text: listed\n",
    )
    .unwrap();
    let sid = w.session().await;
    let worker = agent(json!({
        "name": "worker",
        "model": "scripted/worker",
        "tools": [{"type": "agent_toolset_20260401"}]
    }));
    start_thread(&w, &sid, worker, vec![]).await;
    let log = w.settle(&sid, Duration::from_secs(5)).await;
    assert_eq!(replies(&log), ["listed"]);
    let sandboxes = w.sandboxes().unwrap();
    assert_eq!(
        *mounts.0.lock().unwrap(),
        [sandboxes.workspace(&sid)],
        "the worker's sandbox mounts the session's workspace"
    );
}
