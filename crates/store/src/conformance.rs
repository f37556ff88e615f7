//! The conformance checks of the session log (`agentd_session::conformance`) and of the
//! catalog (`agentd_catalog::conformance`) on SQLite.

use std::collections::BTreeMap;

use agentd_session::conformance::Fixture;
use agentd_session::events;
use agentd_wire::agent::{AgentTag, CreateAgent, SessionAgent};
use agentd_wire::environment::{EnvironmentConfig, EnvironmentTag};
use agentd_wire::{Environment, Usage};
use async_trait::async_trait;

use agentd_catalog::{Agents, Environments, Keys, NewSession, Sessions};

use crate::Store;

/// A store on a fresh file with a workspace, an agent and an environment to start sessions
/// from; the store tests use it too.
pub(crate) struct Sqlite {
    _dir: tempfile::TempDir,
    store: Store,
    pub(crate) ws: String,
    agent: SessionAgent,
    environment_id: String,
}

pub(crate) async fn fresh() -> Option<(Store, Sqlite)> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("agentd.db")).unwrap();
    let ws = store.register_key("k1", "default").await.unwrap().id;
    let spec = serde_json::from_str::<CreateAgent>(r#"{"name":"a","model":"scripted/echo"}"#)
        .unwrap()
        .into_spec();
    let agent = store.create_agent(&ws, spec).await.unwrap();
    let env = store
        .create_environment(
            &ws,
            Box::new(|id, now| Environment {
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
            }),
        )
        .await
        .unwrap();
    let agent = SessionAgent {
        id: agent.id,
        kind: AgentTag::Agent,
        version: agent.version,
        spec: agent.spec,
    };
    let fixture = Sqlite {
        _dir: dir,
        store: store.clone(),
        ws,
        agent,
        environment_id: env.id,
    };
    Some((store, fixture))
}

#[async_trait]
impl Fixture for Sqlite {
    async fn session(&self) -> String {
        let new = NewSession {
            agent: self.agent.clone(),
            environment_id: self.environment_id.clone(),
            title: None,
            metadata: BTreeMap::new(),
            vault_ids: vec![],
            resources: vec![],
            sealed_tokens: vec![],
        };
        let s = self.store.create_session(&self.ws, new, events(vec![]));
        s.await.unwrap().id
    }

    async fn usage(&self, session_id: &str) -> Usage {
        self.store
            .get_session(&self.ws, session_id)
            .await
            .unwrap()
            .usage
    }

    async fn thread(&self, thread_id: &str) -> Option<(String, String)> {
        let row = self.store.thread(thread_id).await.ok()?;
        Some((row.session_id, row.parent_thread_id))
    }
}

agentd_session::conformance_tests!(fresh);

/// The catalog's conformance checks (`agentd_catalog::conformance`) on SQLite.
mod catalog {
    use crate::Store;

    async fn fresh() -> Option<(Store, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("agentd.db")).unwrap();
        Some((store, dir))
    }

    agentd_catalog::catalog_conformance_tests!(fresh);
}
