//! The session log's conformance checks, and what only PostgreSQL does, against a real server.
//!
//! `AGENTD_TEST_POSTGRES_URL` names a server these tests may create databases on (one per
//! test), e.g. `postgres://postgres@127.0.0.1:5432/postgres`; `./scripts/test.sh` starts a
//! throwaway one and sets it. Without it the tests fail, unless `AGENTD_TEST_POSTGRES=skip`.

use std::time::Duration;

use agentd_session::conformance::Fixture;
use agentd_session::{NewEvent, SessionLog, events};
use agentd_wire::{ContentBlock, EventBody, Usage, ids};
use async_trait::async_trait;
use tokio_postgres::NoTls;

use crate::PgStore;

/// The config of a new, empty database, or `None` when PostgreSQL tests are skipped.
async fn fresh_database() -> Option<tokio_postgres::Config> {
    // Skipping wins over a URL: `./scripts/test.sh --fast` skips even where one is set.
    if std::env::var("AGENTD_TEST_POSTGRES").as_deref() == Ok("skip") {
        return None;
    }
    let Ok(url) = std::env::var("AGENTD_TEST_POSTGRES_URL") else {
        panic!(
            "the PostgreSQL tests need a server: set AGENTD_TEST_POSTGRES_URL to one they may \
             create databases on (e.g. postgres://postgres@127.0.0.1:5432/postgres; \
             ./scripts/test.sh starts a throwaway one), or AGENTD_TEST_POSTGRES=skip to skip them"
        );
    };
    let mut config: tokio_postgres::Config = url.parse().expect("AGENTD_TEST_POSTGRES_URL");
    let (admin, connection) = config.connect(NoTls).await.expect("connect to the server");
    tokio::spawn(connection);
    let name = format!("t_{:016x}", rand::random::<u64>());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a database");
    config.dbname(&name);
    Some(config)
}

struct Pg(PgStore);

async fn fresh() -> Option<(PgStore, Pg)> {
    let store = PgStore::connect(fresh_database().await?).await.unwrap();
    Some((store.clone(), Pg(store)))
}

#[async_trait]
impl Fixture for Pg {
    /// A session row as the catalog will make one; until it lands only tests insert them.
    async fn session(&self) -> String {
        let id = ids::new(ids::Kind::Session);
        let usage = serde_json::to_value(Usage::default()).unwrap();
        let c = self.0.pool.get().await.unwrap();
        c.execute(
            "INSERT INTO sessions (id, workspace_id, agent_id, agent_version, agent, environment_id, status, metadata, usage, created_at, updated_at)
             VALUES ($1, 'wrkspc_test', 'agent_test', 1, '{}', 'env_test', 'idle', '{}', $2, now(), now())",
            &[&id, &usage],
        )
        .await
        .unwrap();
        id
    }

    async fn usage(&self, session_id: &str) -> Usage {
        let c = self.0.pool.get().await.unwrap();
        let row = c
            .query_one("SELECT usage FROM sessions WHERE id = $1", &[&session_id])
            .await
            .unwrap();
        serde_json::from_value(row.get(0)).unwrap()
    }

    async fn thread(&self, thread_id: &str) -> Option<(String, String)> {
        let c = self.0.pool.get().await.unwrap();
        let row = c
            .query_opt(
                "SELECT session_id, parent_thread_id FROM threads WHERE id = $1",
                &[&thread_id],
            )
            .await
            .unwrap()?;
        Some((row.get(0), row.get(1)))
    }
}

agentd_session::conformance_tests!(fresh);

/// Two processes on one database: a subscriber of one is told of the other's appends, which
/// read back exactly as they were returned; opening an up-to-date database migrates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_another_processs_appends() {
    let Some(config) = fresh_database().await else {
        return;
    };
    let writer = PgStore::connect(config.clone()).await.unwrap();
    let reader = PgStore::connect(config).await.unwrap();
    let sid = Pg(writer.clone()).session().await;
    let mut tail = reader.subscribe(&sid);
    let msg = NewEvent::new(EventBody::UserMessage {
        content: vec![ContentBlock::text("hi")],
    });
    let (_, stored) = writer.append(&sid, events(vec![msg])).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), tail.wait_for(|t| *t == 1))
        .await
        .expect("told in time")
        .unwrap();
    assert_eq!(reader.read(&sid, 0, 10).await.unwrap(), stored);
    let c = reader.pool.get().await.unwrap();
    let versions: i64 = c
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, i64::from(crate::migrate::LATEST));
    // The body is kept as the text SQLite keeps, byte for byte.
    let text: String = c
        .query_one("SELECT body::text FROM events WHERE log_id = $1", &[&sid])
        .await
        .unwrap()
        .get(0);
    assert_eq!(text, serde_json::to_string(&stored[0].event.body).unwrap());
}

/// Appends made while the `LISTEN` connection was down are told once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_catches_up_after_the_listening_connection_drops() {
    let Some(config) = fresh_database().await else {
        return;
    };
    let writer = PgStore::connect(config.clone()).await.unwrap();
    let reader = PgStore::connect(config).await.unwrap();
    let sid = Pg(writer.clone()).session().await;
    let mut tail = reader.subscribe(&sid);
    let c = writer.pool.get().await.unwrap();
    let dropped = c
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN agentd_log'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(dropped, 2, "both processes' listeners");
    let msg = NewEvent::new(EventBody::UserMessage {
        content: vec![ContentBlock::text("while nobody listens")],
    });
    writer.append(&sid, events(vec![msg])).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), tail.wait_for(|t| *t == 1))
        .await
        .expect("told once listening again")
        .unwrap();
}

/// A database a newer agentd migrated is refused, not misread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_agentd_is_refused() {
    let Some(config) = fresh_database().await else {
        return;
    };
    let store = PgStore::connect(config.clone()).await.unwrap();
    let c = store.pool.get().await.unwrap();
    c.execute(
        "INSERT INTO schema_migrations (version) VALUES ($1)",
        &[&(crate::migrate::LATEST + 1)],
    )
    .await
    .unwrap();
    let Err(err) = PgStore::connect(config).await else {
        panic!("a newer schema was opened");
    };
    assert!(
        err.to_string().contains("written by a newer agentd"),
        "{err}"
    );
}
