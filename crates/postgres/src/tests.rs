//! The session log's conformance checks, and what only PostgreSQL does, against a real server.
//!
//! `AGENTD_TEST_POSTGRES_URL` names a server these tests may create databases on (one per
//! test), e.g. `postgres://postgres@127.0.0.1:5432/postgres`; `./scripts/test.sh` starts a
//! throwaway one and sets it. Without it the tests fail, unless `AGENTD_TEST_POSTGRES=skip`.

use std::time::Duration;

use agentd_catalog::Sessions;
use agentd_catalog::conformance::{self, Seed};
use agentd_session::conformance::Fixture;
use agentd_session::{NewEvent, SessionLog, events};
use agentd_wire::{ContentBlock, EventBody, Usage};
use async_trait::async_trait;
use tokio_postgres::NoTls;

use crate::{OpenError, Options, PgStore};

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
    // As agentd reads a URL: no TLS unless it asks (the test server offers TLS).
    let (mut config, _) = crate::tls::parse(&url).expect("AGENTD_TEST_POSTGRES_URL");
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

/// A store seeded with a workspace, an agent and an environment to start sessions from.
struct Pg {
    store: PgStore,
    seed: Seed,
}

impl Pg {
    async fn seeded(store: PgStore) -> Pg {
        let seed = conformance::seed(&store, "default").await;
        Pg { store, seed }
    }
}

async fn fresh() -> Option<(PgStore, Pg)> {
    let store = PgStore::connect(fresh_database().await?).await.unwrap();
    Some((store.clone(), Pg::seeded(store).await))
}

#[async_trait]
impl Fixture for Pg {
    async fn session(&self) -> String {
        self.seed.session(&self.store).await
    }

    async fn usage(&self, session_id: &str) -> Usage {
        let s = self.store.get_session(&self.seed.ws, session_id).await;
        s.unwrap().usage
    }

    async fn thread(&self, thread_id: &str) -> Option<(String, String)> {
        let row = self.store.thread(thread_id).await.ok()?;
        Some((row.session_id, row.parent_thread_id))
    }
}

agentd_session::conformance_tests!(fresh);

/// The catalog's conformance checks (`agentd_catalog::conformance`) on PostgreSQL.
mod catalog {
    use crate::PgStore;

    async fn fresh() -> Option<(PgStore, ())> {
        let config = super::fresh_database().await?;
        Some((PgStore::connect(config).await.unwrap(), ()))
    }

    agentd_catalog::catalog_conformance_tests!(fresh);
}

/// Two processes on one database: a subscriber of one is told of the other's appends, which
/// read back exactly as they were returned; opening an up-to-date database migrates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_another_processs_appends() {
    let Some(config) = fresh_database().await else {
        return;
    };
    let writer = PgStore::connect(config.clone()).await.unwrap();
    let reader = PgStore::connect(config).await.unwrap();
    let sid = Pg::seeded(writer.clone()).await.session().await;
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

/// Appends made while the `LISTEN` connection was down are told once it is back, and lease
/// owners hear that nudges may have been missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_catches_up_after_the_listening_connection_drops() {
    use agentd_session::lease::Leases;

    let Some(config) = fresh_database().await else {
        return;
    };
    let writer = PgStore::connect(config.clone()).await.unwrap();
    let reader = PgStore::connect(config).await.unwrap();
    let sid = Pg::seeded(writer.clone()).await.session().await;
    let mut tail = reader.subscribe(&sid);
    let mut missed = reader.nudges_missed();
    let c = writer.pool.get().await.unwrap();
    let dropped = c
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN agentd_log%'",
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
    tokio::time::timeout(Duration::from_secs(10), missed.changed())
        .await
        .expect("nudges said missed once listening again")
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

/// A session deleted through one process is gone for the other's subscribers, whether they
/// hear the notification or catch up after their listening connection dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_reaches_another_processs_subscribers() {
    let Some(config) = fresh_database().await else {
        return;
    };
    let one = Pg::seeded(PgStore::connect(config.clone()).await.unwrap()).await;
    let other = PgStore::connect(config).await.unwrap();
    let (heard, missed) = (one.session().await, one.session().await);
    let mut heard_tail = other.subscribe(&heard);
    one.store
        .delete_session(&one.seed.ws, &heard)
        .await
        .unwrap();
    let deleted = |t: &u64| *t == agentd_session::DELETED;
    tokio::time::timeout(Duration::from_secs(5), heard_tail.wait_for(deleted))
        .await
        .expect("told in time")
        .unwrap();

    let mut missed_tail = other.subscribe(&missed);
    let c = one.store.pool.get().await.unwrap();
    c.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN agentd_log%'",
        &[],
    )
    .await
    .unwrap();
    one.store
        .delete_session(&one.seed.ws, &missed)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), missed_tail.wait_for(deleted))
        .await
        .expect("told once listening again")
        .unwrap();
}

/// A database made by the first schema (the session log alone) is brought forward, and its
/// sessions stay readable in the workspaces they named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_database_is_migrated_and_keeps_its_sessions() {
    let Some(config) = fresh_database().await else {
        return;
    };
    let (mut client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    crate::migrate::run_to(&mut client, 1).await.unwrap();
    let usage = serde_json::to_string(&Usage::default()).unwrap();
    client
        .execute(
            r#"INSERT INTO sessions (id, workspace_id, agent_id, agent_version, agent, environment_id, status, metadata, usage, created_at, updated_at)
               VALUES ('sesn_old', 'wrkspc_old', 'agent_1', 1,
                 '{"id":"agent_1","type":"agent","version":1,"name":"a","model":{"id":"scripted/echo"},"tools":[],"mcp_servers":[],"skills":[],"metadata":{},"execution_identity":null}',
                 'env_1', 'idle', '{}', $1::text::jsonb, now(), now())"#,
            &[&usage],
        )
        .await
        .unwrap();
    client
        .batch_execute(
            r#"INSERT INTO events (log_id, seq, id, type, processed_at, body)
               VALUES ('sesn_old', 1, 'sevt_1', 'user.message', now(), '{"type":"user.message","content":[]}')"#,
        )
        .await
        .unwrap();
    let store = PgStore::connect(config).await.unwrap();
    let s = store.get_session("wrkspc_old", "sesn_old").await.unwrap();
    assert_eq!(s.agent.id, "agent_1");
    let e = store.read("sesn_old", 0, 10).await.unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].event.id, "sevt_1");
}

/// A SQLite installation copied into an empty database reads back the same through every
/// interface, each log byte for byte; a second copy into it is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_installation_copies_whole_into_an_empty_database() {
    use agentd_catalog::{Agents, Files, Keys, NewFile};

    let Some(config) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agentd.db");
    let sqlite = agentd_store::Store::open(&path).unwrap();
    let seed = conformance::seed(&sqlite, "default").await;
    let (_, key) = sqlite.create_key("team", Some("ci")).await.unwrap();
    let mut sessions = Vec::new();
    for i in 0..3 {
        let sid = seed.session(&sqlite).await;
        for j in 0..5 {
            let text = format!("message {i}.{j} ✓ \"quoted\"");
            let msg = NewEvent::new(EventBody::UserMessage {
                content: vec![ContentBlock::text(&text)],
            });
            sqlite.append(&sid, events(vec![msg])).await.unwrap();
        }
        sessions.push(sid);
    }
    let file = NewFile {
        filename: "r.bin".into(),
        mime_type: "application/octet-stream".into(),
        content: vec![0, 1, 2, 255],
        expires_at: None,
    };
    let file = sqlite.create_file(&seed.ws, file).await.unwrap();
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let resource = agentd_wire::resource::Resource::File(agentd_wire::resource::FileResource {
        id: "sesrsc_1".into(),
        file_id: file.id.clone(),
        mount_path: "/data/r.bin".into(),
        created_at: at,
        updated_at: at,
    });
    sqlite
        .add_session_resource(&seed.ws, &sessions[0], resource, None)
        .await
        .unwrap();
    drop(sqlite);

    let pg = PgStore::connect(config).await.unwrap();
    let copied = crate::copy::from_sqlite(&path, &pg, |_, _| {})
        .await
        .unwrap();
    let events_copied = copied.iter().find(|(t, _)| *t == "events").unwrap().1;
    assert_eq!(events_copied, 15);

    let sqlite = agentd_store::Store::open(&path).unwrap();
    for sid in &sessions {
        assert_eq!(
            pg.read(sid, 0, 100).await.unwrap(),
            sqlite.read(sid, 0, 100).await.unwrap()
        );
        let (a, b) = (
            pg.get_session(&seed.ws, sid).await.unwrap(),
            sqlite.get_session(&seed.ws, sid).await.unwrap(),
        );
        assert_eq!(
            (a.agent, a.metadata, a.resources, a.created_at),
            (b.agent, b.metadata, b.resources, b.created_at)
        );
    }
    let c = pg.pool.get().await.unwrap();
    let text: String = c
        .query_one(
            "SELECT body::text FROM events WHERE log_id = $1 AND seq = 1",
            &[&sessions[0]],
        )
        .await
        .unwrap()
        .get(0);
    let raw = rusqlite::Connection::open(&path).unwrap();
    let original: String = raw
        .query_row(
            "SELECT body FROM events WHERE session_id = ?1 AND seq = 1",
            [&sessions[0]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(text, original, "the same bytes");
    let kept = pg.get_session(&seed.ws, &sessions[0]).await.unwrap();
    assert_eq!(
        kept.resources.len(),
        1,
        "the session's resources came along"
    );
    assert_eq!(pg.authenticate(&key).await.unwrap().unwrap().name, "team");
    let agent = pg.get_agent(&seed.ws, &seed.agent.id, None).await.unwrap();
    assert_eq!(agent.spec, seed.agent.spec);
    assert_eq!(
        pg.file_content(&seed.ws, &file.id).await.unwrap().1,
        vec![0, 1, 2, 255]
    );

    let again = crate::copy::from_sqlite(&path, &pg, |_, _| {}).await;
    let Err(crate::copy::CopyError::NotEmpty(held)) = again else {
        panic!("a copy into a database with data went ahead: {again:?}");
    };
    assert!(held.contains("3 sessions"), "{held}");
    assert_eq!(pg.read(&sessions[0], 0, 100).await.unwrap().len(), 5);
}

/// A self_hosted environment's queue crosses too: the live item as it was, the keys with
/// their hashes (the plaintext still authenticates) and a revoked key still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_keeps_the_work_queue_and_environment_keys() {
    use agentd_catalog::WorkQueue;
    use agentd_session::catalog::Catalog;

    let Some(config) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agentd.db");
    let sqlite = agentd_store::Store::open(&path).unwrap();
    let seed = conformance::seed(&sqlite, "default").await;
    let sid = seed.session(&sqlite).await;
    assert_eq!(
        sqlite.queue_session_work(&sid).await.unwrap(),
        agentd_session::catalog::WorkQueued::Queued
    );
    let work = sqlite.session_work(&sid).await.unwrap();
    let env = &seed.environment_id;
    let (_, key) = sqlite
        .create_environment_key(env, Some("laptop"))
        .await
        .unwrap();
    let (gone, gone_key) = sqlite.create_environment_key(env, None).await.unwrap();
    sqlite.revoke_environment_key(env, &gone.id).await.unwrap();
    let keys = sqlite.list_environment_keys(env).await.unwrap();
    drop(sqlite);

    let pg = PgStore::connect(config).await.unwrap();
    let copied = crate::copy::from_sqlite(&path, &pg, |_, _| {})
        .await
        .unwrap();
    assert!(copied.contains(&("work_items", 1)), "{copied:?}");
    assert!(copied.contains(&("environment_keys", 2)), "{copied:?}");
    assert_eq!(pg.session_work(&sid).await.unwrap(), work);
    assert_eq!(pg.live_work(Some(env)).await.unwrap(), work);
    let owner = pg.authenticate_environment_key(&key).await.unwrap();
    assert_eq!(owner.unwrap().environment_id, *env);
    assert!(
        pg.authenticate_environment_key(&gone_key)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(pg.list_environment_keys(env).await.unwrap(), keys);
}

/// A nudge one process sends reaches another's listeners, and a lease one process holds is
/// refused to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_nudges_span_processes() {
    use agentd_session::lease::{Leases, Nudge};

    let Some(config) = fresh_database().await else {
        return;
    };
    let one = Pg::seeded(PgStore::connect(config.clone()).await.unwrap()).await;
    let other = PgStore::connect(config).await.unwrap();
    let sid = one.session().await;
    let ttl = Duration::from_secs(60);
    assert!(one.store.acquire(&sid, "one", ttl).await.unwrap());
    assert!(!other.acquire(&sid, "other", ttl).await.unwrap());
    let mut heard = one.store.nudges();
    other.nudge(&sid, Nudge::Wake).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), heard.recv()).await;
    assert_eq!(got.expect("in time").unwrap(), (sid, Nudge::Wake));
}

/// A TCP relay in front of the server that the test can cut, as a network failure would.
struct Relay {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: (String, u16), port: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = to.clone();
                links.spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        Relay { port, task }
    }

    /// Cut every link and stop accepting: aborting the task drops its sockets.
    fn cut(self) -> u16 {
        self.task.abort();
        self.port
    }
}

/// When the database cannot be reached, the catalog and the log say so as `Unavailable`
/// (the API's 503), not as a storage failure; once it is back, they work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_unavailable_and_recovers() {
    use tokio_postgres::config::Host;

    let Some(direct) = fresh_database().await else {
        return;
    };
    let host = match &direct.get_hosts()[0] {
        Host::Tcp(h) => h.clone(),
        Host::Unix(_) => return,
    };
    let server = (host, direct.get_ports()[0]);
    let relay = Relay::start(server.clone(), 0).await;
    let mut config = tokio_postgres::Config::new();
    config
        .ssl_mode(tokio_postgres::config::SslMode::Disable)
        .host("127.0.0.1")
        .port(relay.port)
        .user(direct.get_user().unwrap())
        .dbname(direct.get_dbname().unwrap());
    let pg = Pg::seeded(PgStore::connect(config).await.unwrap()).await;
    let sid = pg.session().await;

    let port = relay.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lost = pg.store.get_session(&pg.seed.ws, &sid).await;
    assert!(
        matches!(lost, Err(agentd_catalog::Error::Unavailable(_))),
        "{lost:?}"
    );
    let append = pg.store.append(&sid, events(vec![])).await;
    assert!(
        matches!(append, Err(agentd_session::Error::Unavailable(_))),
        "{append:?}"
    );

    let _back = Relay::start(server, port).await;
    let again = pg.store.get_session(&pg.seed.ws, &sid).await;
    assert_eq!(again.unwrap().id, sid);
}

/// With `sslmode`, every connection (the pool's and the LISTEN one) is TLS, verified against
/// `sslrootcert`; a certificate nothing trusts is refused at once with the reason, not retried
/// as an unreachable server. Needs AGENTD_TEST_POSTGRES_CA, the CA that signed the test
/// server's certificate (./scripts/test.sh makes both).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_used_and_verified_when_the_url_asks_for_it() {
    let Some(config) = fresh_database().await else {
        return;
    };
    let Ok(ca) = std::env::var("AGENTD_TEST_POSTGRES_CA") else {
        // A server someone brought; ./scripts/test.sh's own always has TLS and sets this.
        eprintln!(
            "skipped: AGENTD_TEST_POSTGRES_CA (the CA of the server's certificate) is not set"
        );
        return;
    };
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/{}",
        config.get_ports()[0],
        config.get_dbname().unwrap()
    );
    let encrypted = |store: PgStore| async move {
        // The whole store, listener included, lives until the queries are done.
        let store = store;
        let c = store.pool.get().await.unwrap();
        let row = c
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        let listening = c
            .query_one(
                "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = 'agentd-listen' AND a.datname = current_database()",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, bool>(0), listening.get::<_, Option<bool>>(0))
    };
    let ca_param = ca.replace('/', "%2F");
    let tls = PgStore::open(
        &format!("{url}?sslmode=verify-full&sslrootcert={ca_param}"),
        Options::default(),
    )
    .await
    .expect("TLS with the test CA");
    assert_eq!(encrypted(tls).await, (true, Some(true)));
    let plain = PgStore::open(&url, Options::default()).await.unwrap();
    assert!(!encrypted(plain).await.0);
    // The system's roots do not know the test CA: refused, with the reason.
    let untrusted = PgStore::open(&format!("{url}?sslmode=require"), Options::default()).await;
    let Err(OpenError::Tls(why)) = untrusted else {
        panic!(
            "an untrusted certificate was accepted or misreported: {:?}",
            untrusted.err()
        );
    };
    assert!(why.contains("certificate"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_quota_counts_uploads_and_outputs() {
    let Some(config) = fresh_database().await else {
        return;
    };
    let store = PgStore::connect(config)
        .await
        .unwrap()
        .with_files_quota(conformance::SMALL_FILES_QUOTA);
    conformance::files_quota_counts_uploads_and_outputs(&store).await;
}

/// `agentd db copy` takes vaults, credentials with their sealed bytes as they are, the key
/// check value and each session's vaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_keeps_vaults_credentials_and_the_key_check() {
    use agentd_catalog::{Sessions, StoredCredential, Vaults};
    use agentd_wire::vault::{Credential, CredentialAuth, CredentialTag, Vault, VaultTag};

    let Some(config) = fresh_database().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agentd.db");
    let sqlite = agentd_store::Store::open(&path).unwrap();
    let seed = conformance::seed(&sqlite, "default").await;
    let ws = &seed.ws;
    let v = sqlite
        .create_vault(
            ws,
            Box::new(|id, now| Vault {
                id,
                kind: VaultTag::Vault,
                display_name: "v".into(),
                metadata: std::collections::BTreeMap::new(),
                created_at: now,
                updated_at: now,
                archived_at: None,
            }),
        )
        .await
        .unwrap();
    let vid = v.id.clone();
    let c = sqlite
        .create_credential(
            ws,
            &v.id,
            Box::new(move |id, now| {
                Ok(StoredCredential {
                    credential: Credential {
                        id,
                        kind: CredentialTag::VaultCredential,
                        vault_id: vid,
                        display_name: Some("c".into()),
                        auth: CredentialAuth::StaticBearer {
                            mcp_server_url: "https://m.example/".into(),
                        },
                        metadata: std::collections::BTreeMap::new(),
                        created_at: now,
                        updated_at: now,
                        archived_at: None,
                    },
                    sealed: vec![1, 0, 255, 7],
                })
            }),
        )
        .await
        .unwrap();
    sqlite
        .init_vault_key_check(b"check".to_vec())
        .await
        .unwrap();
    let new = agentd_catalog::NewSession {
        vault_ids: vec![v.id.clone()],
        ..seed.new_session(None)
    };
    let sid = sqlite
        .create_session(ws, new, agentd_session::events(vec![]))
        .await
        .unwrap()
        .id;
    drop(sqlite);

    let pg = PgStore::connect(config).await.unwrap();
    let copied = crate::copy::from_sqlite(&path, &pg, |_, _| {})
        .await
        .unwrap();
    assert!(copied.contains(&("vaults", 1)), "{copied:?}");
    assert!(copied.contains(&("vault_credentials", 1)), "{copied:?}");
    assert!(copied.contains(&("vault_key", 1)), "{copied:?}");
    assert_eq!(pg.get_vault(ws, &v.id).await.unwrap(), v);
    assert_eq!(
        pg.get_credential(ws, &v.id, &c.credential.id)
            .await
            .unwrap(),
        c
    );
    assert_eq!(pg.vault_key_check().await.unwrap().unwrap(), b"check");
    assert_eq!(
        pg.get_session(ws, &sid).await.unwrap().vault_ids,
        vec![v.id.clone()]
    );
}
