//! A whole agentd core in one process: the SQLite store in a temp dir, a registry pointed at
//! a fake upstream, the harness and the runner — for integration tests and benches that need
//! more than one crate but not HTTP.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use agentd_brain::{Harness, HarnessConfig, Previews, Runner, Sandboxes};
use agentd_catalog::{NewSession, Storage};
use agentd_models::{Registry, RegistryConfig};
use agentd_session::{NewEvent, StoredEvent, events};
use agentd_store::Store;
use agentd_wire::agent::SessionAgent;
use agentd_wire::agent::{AgentTag, CreateAgent};
use agentd_wire::environment::{EnvironmentConfig, EnvironmentTag};
use agentd_wire::{ContentBlock, Environment, EventBody, SessionStatus};

pub struct World {
    pub store: Arc<dyn Storage>,
    pub runner: Runner,
    /// Live previews, for measuring time to the first streamed token.
    pub previews: Previews,
    /// The workspace everything was made in.
    pub ws: String,
    pub env: String,
    pub agent: SessionAgent,
    _dir: tempfile::TempDir,
}

/// Every failure here is a broken test set-up, so it panics with the cause.
fn must<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("test world: {what}: {e}"),
    }
}

impl World {
    /// A core whose `claude-*` models call `upstream`, with one agent made from `agent` (a
    /// create-agent request body) and one environment.
    pub async fn start(upstream: &str, agent: Value, cfg: HarnessConfig) -> World {
        Self::start_with(upstream, agent, cfg, None).await
    }

    /// As `start`, running built-in tools through `provider` (workspaces in the temp dir).
    pub async fn start_with(
        upstream: &str,
        agent: Value,
        cfg: HarnessConfig,
        provider: Option<Arc<dyn agentd_hands::Provider>>,
    ) -> World {
        let registry = RegistryConfig {
            anthropic_base_url: upstream.to_owned(),
            anthropic_api_key: Some("test-upstream-key".into()),
            scripts_dir: PathBuf::new(),
        };
        Self::start_with_registry(registry, agent, cfg, provider).await
    }

    /// As `start`, over `store` (an empty database) instead of a SQLite file of its own.
    pub async fn start_on(
        store: Arc<dyn Storage>,
        upstream: &str,
        agent: Value,
        cfg: HarnessConfig,
    ) -> World {
        let registry = RegistryConfig {
            anthropic_base_url: upstream.to_owned(),
            anthropic_api_key: Some("test-upstream-key".into()),
            scripts_dir: PathBuf::new(),
        };
        Self::build(registry, agent, cfg, None, Some(store)).await
    }

    /// As `start_with`, with the models `registry` routes to (its scripts dir is replaced by
    /// the world's own, `scripts_dir()`).
    pub async fn start_with_registry(
        registry: RegistryConfig,
        agent: Value,
        cfg: HarnessConfig,
        provider: Option<Arc<dyn agentd_hands::Provider>>,
    ) -> World {
        Self::build(registry, agent, cfg, provider, None).await
    }

    async fn build(
        mut registry: RegistryConfig,
        agent: Value,
        cfg: HarnessConfig,
        provider: Option<Arc<dyn agentd_hands::Provider>>,
        store: Option<Arc<dyn Storage>>,
    ) -> World {
        let dir = must(tempfile::tempdir(), "temp dir");
        registry.scripts_dir = dir.path().join("scripts");
        must(
            std::fs::create_dir_all(&registry.scripts_dir),
            "scripts dir",
        );
        let store: Arc<dyn Storage> = match store {
            Some(store) => store,
            None => Arc::new(must(
                Store::open(&dir.path().join("agentd.db")),
                "open the store",
            )),
        };
        let ws = must(
            store.register_key("test-key", "default").await,
            "register a key",
        )
        .id;
        let spec = must(serde_json::from_value::<CreateAgent>(agent), "agent body").into_spec();
        let agent = must(store.create_agent(&ws, spec).await, "create the agent");
        let env = must(
            store
                .create_environment(
                    &ws,
                    Box::new(|id, now| Environment {
                        id,
                        kind: EnvironmentTag::Environment,
                        name: "test".into(),
                        description: None,
                        config: EnvironmentConfig::default(),
                        metadata: BTreeMap::new(),
                        scope: None,
                        created_at: now,
                        updated_at: now,
                        archived_at: None,
                    }),
                )
                .await,
            "create the environment",
        )
        .id;
        let models = Arc::new(Registry::new(registry));
        let previews = Previews::default();
        let mut harness = Harness::new(store.clone(), store.clone(), models, previews.clone(), cfg);
        if let Some(p) = provider {
            // A small disk quota, so tests can go over it.
            harness = harness.with_sandboxes(Arc::new(
                Sandboxes::new(
                    p,
                    dir.path().join("sandbox"),
                    agentd_hands::Limits::default(),
                )
                .with_disk_quota(1 << 20),
            ));
        }
        World {
            runner: Runner::new(harness, store.clone(), agentd_brain::DEFAULT_LEASE),
            previews,
            agent: SessionAgent {
                id: agent.id,
                kind: AgentTag::Agent,
                version: agent.version,
                spec: agent.spec,
            },
            store,
            ws,
            env,
            _dir: dir,
        }
    }

    /// The harness's sandbox pool; `None` when the world has no hands.
    pub fn sandboxes(&self) -> Option<Arc<Sandboxes>> {
        self.runner.harness().sandboxes().cloned()
    }

    /// Where `scripted/<name>` models are read from.
    pub fn scripts_dir(&self) -> PathBuf {
        self._dir.path().join("scripts")
    }

    /// A session with a new agent made from `agent` (a create-agent request body).
    pub async fn session_for(&self, agent: Value) -> String {
        let spec = must(serde_json::from_value::<CreateAgent>(agent), "agent body").into_spec();
        let a = must(
            self.store.create_agent(&self.ws, spec).await,
            "create the agent",
        );
        self.session_of(SessionAgent {
            id: a.id,
            kind: AgentTag::Agent,
            version: a.version,
            spec: a.spec,
        })
        .await
    }

    pub async fn session(&self) -> String {
        self.session_of(self.agent.clone()).await
    }

    /// A session with `resources`, and the sealed tokens of those that have one.
    pub async fn session_with_resources(
        &self,
        resources: Vec<agentd_wire::resource::Resource>,
        sealed_tokens: Vec<(String, Vec<u8>)>,
    ) -> String {
        let s = self
            .store
            .create_session(
                &self.ws,
                NewSession {
                    agent: self.agent.clone(),
                    environment_id: self.env.clone(),
                    title: None,
                    metadata: BTreeMap::new(),
                    vault_ids: vec![],
                    resources,
                    sealed_tokens,
                },
                events(vec![]),
            )
            .await;
        must(s, "create a session").id
    }

    async fn session_of(&self, agent: SessionAgent) -> String {
        let s = self
            .store
            .create_session(
                &self.ws,
                NewSession {
                    agent,
                    environment_id: self.env.clone(),
                    title: None,
                    metadata: BTreeMap::new(),
                    vault_ids: vec![],
                    resources: vec![],
                    sealed_tokens: vec![],
                },
                events(vec![]),
            )
            .await;
        must(s, "create a session").id
    }

    /// Append `events` and wake the session, as the API does for what a client sends.
    pub async fn send(&self, sid: &str, batch: Vec<EventBody>) -> Instant {
        let mut batch: Vec<NewEvent> = batch.into_iter().map(NewEvent::new).collect();
        batch.push(NewEvent::new(EventBody::SessionStatusRunning {}));
        must(self.store.append(sid, events(batch)).await, "append");
        let accepted = Instant::now();
        self.runner.notify(sid);
        accepted
    }

    /// Send a user message; returns when it was durable (accepted).
    pub async fn say(&self, sid: &str, text: &str) -> Instant {
        self.send(
            sid,
            vec![EventBody::UserMessage {
                content: vec![ContentBlock::text(text)],
            }],
        )
        .await
    }

    /// Interrupt the session as the API does: log `user.interrupt`, then cancel its wake.
    pub async fn interrupt(&self, sid: &str) {
        let e = NewEvent::new(EventBody::UserInterrupt {
            session_thread_id: None,
        });
        must(self.store.append(sid, events(vec![e])).await, "append");
        self.runner.interrupt(sid);
    }

    /// The moment a `session.status_idle` after position `after` was seen appended; the
    /// tail subscription wakes at once, so this is the time it became durable.
    pub async fn idle_at(&self, sid: &str, after: u64) -> Instant {
        let mut tail = self.store.subscribe(sid);
        let mut seen = after;
        loop {
            for e in must(self.store.read(sid, seen, 1000).await, "read") {
                seen = e.seq;
                if matches!(e.event.body, EventBody::SessionStatusIdle { .. }) {
                    return Instant::now();
                }
            }
            let changed = tokio::time::timeout(Duration::from_secs(60), tail.changed()).await;
            must(must(changed, "waiting for idle"), "tail");
        }
    }

    /// Wait until the session rests (idle, no wake in flight) and return its whole log.
    pub async fn settle(&self, sid: &str, within: Duration) -> Vec<StoredEvent> {
        let deadline = Instant::now() + within;
        loop {
            let head = must(self.store.head(sid).await, "head");
            if head.status == SessionStatus::Idle && !self.runner.is_active(sid) {
                return must(self.store.read(sid, 0, 100_000).await, "read");
            }
            assert!(
                Instant::now() < deadline,
                "session {sid} did not rest within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
