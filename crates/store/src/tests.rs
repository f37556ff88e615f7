//! Store tests against a real SQLite file.

use std::collections::BTreeMap;

use agentd_session::{NewEvent, Refusal, SessionLog, at_tail, events};
use agentd_wire::{ContentBlock, EventBody, SessionStatus, StopReason};

use agentd_catalog::{Agents, NewSession, Sessions, Threads};

use agentd_session::conformance::Fixture;

use super::*;
use crate::conformance::{self, Sqlite};

/// A store with one idle session: (what keeps the file, the store, its workspace, the session).
async fn fixture() -> (Sqlite, Store, String, String) {
    let (store, sqlite) = conformance::fresh().await.expect("a fresh store");
    let sid = sqlite.session().await;
    let ws = sqlite.ws.clone();
    (sqlite, store, ws, sid)
}

fn msg(text: &str) -> NewEvent {
    NewEvent::new(EventBody::UserMessage {
        content: vec![ContentBlock::text(text)],
    })
}

#[tokio::test]
async fn appends_are_gapless_and_project_status() {
    let (_d, store, ws, sid) = fixture().await;
    let mut tail = store.subscribe(&sid);
    let (head, stored) = store
        .append(
            &sid,
            events(vec![
                msg("a"),
                NewEvent::new(EventBody::SessionStatusRunning {}),
            ]),
        )
        .await
        .unwrap();
    assert_eq!(head.last_seq, 2);
    assert_eq!(head.status, SessionStatus::Running);
    assert_eq!(stored.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    tail.changed().await.unwrap();
    assert_eq!(*tail.borrow(), 2);
    assert_eq!(store.running_sessions().await.unwrap(), vec![sid.clone()]);

    let idle = NewEvent::new(EventBody::SessionStatusIdle {
        stop_reason: StopReason::EndTurn,
        stop_details: None,
    });
    store.append(&sid, events(vec![idle])).await.unwrap();
    let s = store.get_session(&ws, &sid).await.unwrap();
    assert_eq!(s.status, SessionStatus::Idle);
    let all = store.read(&sid, 0, 100).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert_eq!(store.read(&sid, 2, 100).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_refused_guard_stores_nothing() {
    let (_d, store, _ws, sid) = fixture().await;
    store.append(&sid, events(vec![msg("a")])).await.unwrap();
    let err = store
        .append(&sid, at_tail(0, vec![msg("b")]))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        agentd_session::Error::Refused(Refusal::Stale {
            expected: 0,
            actual: 1
        })
    ));
    store
        .append(
            &sid,
            events(vec![NewEvent::new(EventBody::SessionStatusTerminated {})]),
        )
        .await
        .unwrap();
    let err = store
        .append(&sid, events(vec![msg("c")]))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        agentd_session::Error::Refused(Refusal::Terminated)
    ));
    assert_eq!(store.read(&sid, 0, 100).await.unwrap().len(), 2);
}

#[tokio::test]
async fn concurrent_appends_share_commits_without_gaps() {
    let (_d, store, _ws, sid) = fixture().await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = store.clone();
        let sid = sid.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(&sid, events(vec![msg(&i.to_string())]))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = store.read(&sid, 0, 1000).await.unwrap();
    assert_eq!(all.len(), 50);
    assert!(all.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1));
}

#[test]
fn an_old_database_is_migrated_on_open_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let mut c = rusqlite::Connection::open(&path).unwrap();
        migrate::run_to(&mut c, 1).unwrap();
        c.execute(
            "INSERT INTO workspaces (id, name, created_at) VALUES ('wrkspc_1', 'old', '2026-01-01T00:00:00.000000Z')",
            [],
        )
        .unwrap();
    }
    let _store = Store::open(&path).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: u32 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, migrate::LATEST);
    let name: String = c
        .query_row("SELECT name FROM workspaces", [], |r| r.get(0))
        .unwrap();
    assert_eq!(name, "old");
    let cols: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('sessions') WHERE name = 'active_ms'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(cols, 1);
}

#[tokio::test]
async fn a_tool_call_is_answered_at_most_once() {
    let (_d, store, _ws, sid) = fixture().await;
    let answer = || {
        NewEvent::new(EventBody::UserCustomToolResult {
            custom_tool_use_id: "sevt_call".into(),
            content: None,
            is_error: None,
            session_thread_id: None,
        })
    };
    store.append(&sid, events(vec![answer()])).await.unwrap();
    let again = store
        .append(&sid, events(vec![msg("x"), answer()]))
        .await
        .unwrap_err();
    assert!(
        matches!(&again, agentd_session::Error::Refused(Refusal::Invalid(m)) if m.contains("already answered")),
        "{again:?}"
    );
    // The refused batch left nothing behind, the message included.
    assert_eq!(store.read(&sid, 0, 100).await.unwrap().len(), 1);
}

/// A `session.thread_created` that makes thread `tid` run the session's own agent.
async fn thread_created(store: &Store, ws: &str, sid: &str, tid: &str) -> NewEvent {
    let agent = store.get_session(ws, sid).await.unwrap().agent;
    NewEvent::new(EventBody::SessionThreadCreated {
        session_thread_id: tid.into(),
        agent_name: "worker".into(),
    })
    .with_private(agentd_session::Private::Thread {
        agent: Box::new(agent),
    })
}

fn received(from: &str) -> NewEvent {
    NewEvent::new(EventBody::AgentThreadMessageReceived {
        from_session_thread_id: from.into(),
        from_agent_name: None,
        content: vec![ContentBlock::text("do the thing")],
    })
}

#[tokio::test]
async fn one_append_creates_a_thread_and_delivers_into_its_log() {
    let (_d, store, ws, sid) = fixture().await;
    let tid = agentd_wire::ids::new(agentd_wire::ids::Kind::Thread);
    let mut child_tail = store.subscribe(&tid);
    let primary = agentd_wire::ids::primary_thread(&sid);
    let created = thread_created(&store, &ws, &sid, &tid).await;
    let (head, stored) = store
        .append(
            &sid,
            events(vec![msg("go"), created, received(&primary).to(tid.clone())]),
        )
        .await
        .unwrap();
    // The target log holds its own events; the delivered one counts in the thread's log.
    assert_eq!(head.last_seq, 2);
    assert_eq!(stored.len(), 2);
    let child = store.read(&tid, 0, 10).await.unwrap();
    assert_eq!(child.len(), 1);
    assert_eq!(child[0].seq, 1);
    assert!(matches!(
        child[0].event.body,
        EventBody::AgentThreadMessageReceived { .. }
    ));
    assert_eq!(*child_tail.borrow_and_update(), 1);
    let row = store.thread(&tid).await.unwrap();
    assert_eq!(
        (row.session_id.as_str(), row.parent_thread_id.as_str()),
        (sid.as_str(), primary.as_str())
    );
    assert_eq!(store.head(&tid).await.unwrap().status, SessionStatus::Idle);
    // The threads API shows the primary thread first, then the child.
    let threads = store
        .list_threads(&ws, &sid, vec![], 10, None)
        .await
        .unwrap();
    let ids: Vec<&str> = threads.items.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [primary.as_str(), tid.as_str()]);
    assert_eq!(store.thread_log(&ws, &sid, &primary).await.unwrap(), sid);
    assert_eq!(store.thread_log(&ws, &sid, &tid).await.unwrap(), tid);
}

#[tokio::test]
async fn a_thread_of_another_session_is_refused_and_nothing_is_stored() {
    let (_d, store, ws, sid) = fixture().await;
    let other = {
        let s = store.get_session(&ws, &sid).await.unwrap();
        store
            .create_session(
                &ws,
                NewSession {
                    agent: s.agent,
                    environment_id: s.environment_id,
                    title: None,
                    metadata: BTreeMap::new(),
                    vault_ids: vec![],
                    resources: vec![],
                    sealed_tokens: vec![],
                },
                events(vec![]),
            )
            .await
            .unwrap()
            .id
    };
    let tid = agentd_wire::ids::new(agentd_wire::ids::Kind::Thread);
    let created = thread_created(&store, &ws, &other, &tid).await;
    store.append(&other, events(vec![created])).await.unwrap();
    let err = store
        .append(
            &sid,
            events(vec![msg("sneak"), received("sthr_x").to(tid.clone())]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, agentd_session::Error::Refused(Refusal::Invalid(_))),
        "{err:?}"
    );
    assert_eq!(store.head(&sid).await.unwrap().last_seq, 0);
    assert!(store.read(&tid, 0, 10).await.unwrap().is_empty());
    // Nor does a thread answer under a session it does not belong to.
    assert!(matches!(
        store.thread_log(&ws, &sid, &tid).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn a_threads_tokens_count_toward_its_session() {
    let (_d, store, ws, sid) = fixture().await;
    let tid = agentd_wire::ids::new(agentd_wire::ids::Kind::Thread);
    let created = thread_created(&store, &ws, &sid, &tid).await;
    store.append(&sid, events(vec![created])).await.unwrap();
    let usage = agentd_wire::usage::ModelUsage {
        input_tokens: 100,
        output_tokens: 7,
        ..Default::default()
    };
    let end = |u| {
        NewEvent::new(EventBody::SpanModelRequestEnd {
            model_request_start_id: "sevt_x".into(),
            is_error: None,
            model_usage: u,
        })
    };
    store.append(&tid, events(vec![end(usage)])).await.unwrap();
    store.append(&sid, events(vec![end(usage)])).await.unwrap();
    let session = store.get_session(&ws, &sid).await.unwrap();
    assert_eq!(
        (session.usage.input_tokens, session.usage.output_tokens),
        (200, 14)
    );
    let threads = store
        .list_threads(&ws, &sid, vec![], 10, None)
        .await
        .unwrap();
    let usage_of = |i: usize| threads.items[i].usage.as_ref().unwrap().input_tokens;
    assert_eq!((usage_of(0), usage_of(1)), (100, 100));
}

#[tokio::test]
async fn a_threads_tokens_survive_a_batch_that_also_writes_the_session_log() {
    let (_d, store, ws, sid) = fixture().await;
    let tid = agentd_wire::ids::new(agentd_wire::ids::Kind::Thread);
    let created = thread_created(&store, &ws, &sid, &tid).await;
    store.append(&sid, events(vec![created])).await.unwrap();
    // A worker's turn that ends in a call shown on the session's log: the copy is loaded
    // into the batch before the tokens are counted.
    let copy = NewEvent::new(EventBody::AgentCustomToolUse {
        name: "lookup".into(),
        input: Default::default(),
        session_thread_id: Some(tid.clone()),
    })
    .to(sid.clone());
    let end = NewEvent::new(EventBody::SpanModelRequestEnd {
        model_request_start_id: "sevt_x".into(),
        is_error: None,
        model_usage: agentd_wire::usage::ModelUsage {
            input_tokens: 100,
            ..Default::default()
        },
    });
    store.append(&tid, events(vec![copy, end])).await.unwrap();
    let session = store.get_session(&ws, &sid).await.unwrap();
    assert_eq!(session.usage.input_tokens, 100);
}

#[tokio::test]
async fn a_database_from_before_threads_keeps_its_agents_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.db");
    {
        let mut c = rusqlite::Connection::open(&path).unwrap();
        migrate::run_to(&mut c, 4).unwrap();
        let t = "2026-01-01T00:00:00.000000Z";
        c.execute_batch(&format!(
            "INSERT INTO workspaces (id, name, created_at) VALUES ('wrkspc_1', 'old', '{t}');
             INSERT INTO agents (id, workspace_id, latest_version, created_at, updated_at)
                 VALUES ('agent_1', 'wrkspc_1', 1, '{t}', '{t}');
             INSERT INTO events (session_id, seq, id, type, processed_at, body)
                 VALUES ('sesn_1', 1, 'sevt_1', 'user.message', '{t}',
                         '{{\"type\":\"user.message\",\"content\":[{{\"type\":\"text\",\"text\":\"hi\"}}]}}');"
        ))
        .unwrap();
        // Back then `multiagent` was stored as sent, whatever it was.
        let spec = serde_json::json!({
            "name": "a", "description": null, "system": null, "model": {"id": "scripted/echo"},
            "tools": [], "mcp_servers": [], "skills": [], "metadata": {},
            "multiagent": {"type": "coordinator", "agents": ["whatever"]},
            "execution_identity": {"type": "service_account"}
        });
        c.execute(
            "INSERT INTO agent_versions (agent_id, version, spec, created_at) VALUES ('agent_1', 1, ?1, ?2)",
            rusqlite::params![spec.to_string(), t],
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let a = store.get_agent("wrkspc_1", "agent_1", None).await.unwrap();
    assert_eq!(a.spec.multiagent, None);
    // The events table was rebuilt with ids unique per log; its rows are all there.
    let e = store.read("sesn_1", 0, 10).await.unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].event.id, "sevt_1");
}

#[test]
fn a_database_from_a_newer_agentd_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    {
        let mut c = rusqlite::Connection::open(&path).unwrap();
        migrate::run(&mut c).unwrap();
        c.pragma_update(None, "user_version", migrate::LATEST + 1)
            .unwrap();
    }
    let Err(err) = Store::open(&path) else {
        panic!("a newer schema was opened");
    };
    assert!(
        err.to_string().contains("written by a newer agentd"),
        "{err}"
    );
    let c = rusqlite::Connection::open(&path).unwrap();
    let v: u32 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, migrate::LATEST + 1);
}

#[tokio::test]
async fn the_files_quota_counts_uploads_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("agentd.db"))
        .unwrap()
        .with_files_quota(agentd_catalog::conformance::SMALL_FILES_QUOTA);
    agentd_catalog::conformance::files_quota_counts_uploads_and_outputs(&store).await;
}
