//! What every catalog backend must do, as tests any backend runs against itself.
//!
//! Each check is a `pub async fn` taking a fresh, empty backend as `&dyn Storage`; checks make
//! what they need through the catalog's own traits and panic on failure.
//! [`catalog_conformance_tests!`](crate::catalog_conformance_tests) writes one `#[tokio::test]`
//! per check for a backend.

use std::collections::BTreeMap;

use agentd_session::catalog::Error as CatalogError;
use agentd_session::{NewEvent, Private, events};
use agentd_wire::agent::{AgentTag, CreateAgent, SessionAgent};
use agentd_wire::environment::{Environment, EnvironmentConfig, EnvironmentTag};
use agentd_wire::file::FileScope;
use agentd_wire::vault::{Credential, CredentialAuth, CredentialTag, Vault, VaultTag};
use agentd_wire::{ContentBlock, EventBody, SessionStatus, ids};

use crate::{
    AgentFilter, Error, EventFilter, NewFile, NewSession, Order, SessionFilter, Storage,
    StoredCredential,
};

/// A workspace with an agent and an environment to start sessions from.
pub struct Seed {
    pub ws: String,
    pub agent: SessionAgent,
    pub environment_id: String,
}

pub async fn seed(s: &dyn Storage, workspace: &str) -> Seed {
    let ws = s.register_key(&format!("key-{workspace}"), workspace).await;
    let ws = ws.expect("register a key").id;
    let spec = serde_json::from_str::<CreateAgent>(r#"{"name":"a","model":"scripted/echo"}"#)
        .expect("an agent")
        .into_spec();
    let agent = s.create_agent(&ws, spec).await.expect("create an agent");
    let env = environment(s, &ws, "e").await;
    Seed {
        ws,
        agent: SessionAgent {
            id: agent.id,
            kind: AgentTag::Agent,
            version: agent.version,
            spec: agent.spec,
        },
        environment_id: env.id,
    }
}

async fn environment(s: &dyn Storage, ws: &str, name: &str) -> Environment {
    let name = name.to_owned();
    s.create_environment(
        ws,
        Box::new(move |id, now| Environment {
            id,
            kind: EnvironmentTag::Environment,
            name,
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
    .expect("create an environment")
}

impl Seed {
    pub fn new_session(&self, title: Option<&str>) -> NewSession {
        NewSession {
            agent: self.agent.clone(),
            environment_id: self.environment_id.clone(),
            title: title.map(str::to_owned),
            metadata: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
            vault_ids: vec![],
            resources: vec![],
            sealed_tokens: vec![],
        }
    }

    pub async fn session(&self, s: &dyn Storage) -> String {
        let new = self.new_session(None);
        s.create_session(&self.ws, new, events(vec![]))
            .await
            .expect("create a session")
            .id
    }
}

fn msg(text: &str) -> NewEvent {
    NewEvent::new(EventBody::UserMessage {
        content: vec![ContentBlock::text(text)],
    })
}

fn limit(n: usize) -> AgentFilter {
    AgentFilter {
        limit: n,
        ..AgentFilter::default()
    }
}

pub async fn keys_authenticate_into_their_workspace(s: &dyn Storage) {
    let ws = s.register_key("k1", "default").await.unwrap();
    // Registering again is a no-op, even under another workspace name.
    assert_eq!(s.register_key("k1", "other").await.unwrap(), ws);
    let (info, key) = s.create_key("team", Some("ci")).await.unwrap();
    assert_eq!(info.workspace.name, "team");
    assert_ne!(info.workspace.id, ws.id);
    assert_eq!(s.authenticate(&key).await.unwrap(), Some(info.workspace));
    assert_eq!(s.authenticate("k1").await.unwrap(), Some(ws));
    assert_eq!(s.authenticate("nope").await.unwrap(), None);
    let names: Vec<_> = s
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&Some("ci".to_owned())), "{names:?}");
}

pub async fn agent_updates_make_versions_and_check_the_expected_one(s: &dyn Storage) {
    let seed = seed(s, "default").await;
    let (ws, id) = (&seed.ws, &seed.agent.id);
    let (same, changed) = s
        .update_agent(ws, id, Some(1), Box::new(|a| Ok(a.clone())))
        .await
        .unwrap();
    assert!(!changed);
    assert_eq!(same.version, 1);
    let brief = |a: &agentd_wire::agent::AgentSpec| {
        let mut a = a.clone();
        a.system = Some("be brief".into());
        Ok(a)
    };
    let (v2, changed) = s
        .update_agent(ws, id, Some(1), Box::new(brief))
        .await
        .unwrap();
    assert!(changed);
    assert_eq!(v2.version, 2);
    let stale = s.update_agent(ws, id, Some(1), Box::new(|a| Ok(a.clone())));
    assert!(matches!(stale.await, Err(Error::Conflict(_))));
    assert_eq!(
        s.get_agent(ws, id, Some(1)).await.unwrap().spec.system,
        None
    );
    assert_eq!(s.get_agent(ws, id, None).await.unwrap().version, 2);
    assert!(matches!(
        s.get_agent(ws, id, Some(9)).await,
        Err(Error::NotFound(_))
    ));
    let versions = s.list_agent_versions(ws, id, 1, None).await.unwrap();
    assert_eq!(versions.items[0].version, 2);
    let rest = s
        .list_agent_versions(ws, id, 1, versions.next)
        .await
        .unwrap();
    assert_eq!(rest.items[0].version, 1);
    assert!(rest.next.is_none());
}

pub async fn agents_concurrent_updates_each_make_a_version(s: &dyn Storage) {
    let seed = seed(s, "default").await;
    let updates = (0..8).map(|i| {
        s.update_agent(
            &seed.ws,
            &seed.agent.id,
            None,
            Box::new(move |a| {
                let mut a = a.clone();
                a.system = Some(format!("v{i}"));
                Ok(a)
            }),
        )
    });
    for r in futures::future::join_all(updates).await {
        assert!(r.unwrap().1);
    }
    let page = s
        .list_agent_versions(&seed.ws, &seed.agent.id, 100, None)
        .await;
    let versions: Vec<u32> = page.unwrap().items.iter().map(|a| a.version).collect();
    assert_eq!(versions, (1..=9).rev().collect::<Vec<_>>());
}

pub async fn archived_agents_are_listed_on_request_and_refuse_updates(s: &dyn Storage) {
    let seed = seed(s, "default").await;
    let spec = seed.agent.spec.clone();
    let second = s.create_agent(&seed.ws, spec).await.unwrap();
    let archived = s.archive_agent(&seed.ws, &second.id).await.unwrap();
    assert!(archived.archived_at.is_some());
    let edit = s.update_agent(&seed.ws, &second.id, None, Box::new(|a| Ok(a.clone())));
    assert!(matches!(edit.await, Err(Error::Conflict(_))));
    let live = s.list_agents(&seed.ws, limit(10)).await.unwrap();
    assert_eq!(live.items.len(), 1);
    let all = AgentFilter {
        include_archived: true,
        ..limit(1)
    };
    let first = s.list_agents(&seed.ws, all.clone()).await.unwrap();
    assert_eq!(first.items[0].id, second.id, "newest first");
    let next = AgentFilter {
        page: first.next,
        ..all
    };
    let rest = s.list_agents(&seed.ws, next).await.unwrap();
    assert_eq!(rest.items[0].id, seed.agent.id);
    assert!(rest.next.is_none());
    assert!(matches!(
        s.archive_agent(&seed.ws, "agent_nope").await,
        Err(Error::NotFound(_))
    ));
}

pub async fn environments_update_archive_list_and_delete(s: &dyn Storage) {
    let seed = seed(s, "default").await;
    let ws = &seed.ws;
    let spare = environment(s, ws, "spare").await;
    let same = s.update_environment(ws, &spare.id, Box::new(|_| Ok(())));
    assert_eq!(
        same.await.unwrap().updated_at,
        spare.updated_at,
        "no change, no move"
    );
    let renamed = s
        .update_environment(
            ws,
            &spare.id,
            Box::new(|e| {
                e.name = "renamed".into();
                Ok(())
            }),
        )
        .await
        .unwrap();
    assert_eq!(s.get_environment(ws, &spare.id).await.unwrap(), renamed);
    let page = s.list_environments(ws, false, 1, None).await.unwrap();
    assert_eq!(page.items[0].id, spare.id, "newest first");
    let rest = s.list_environments(ws, false, 1, page.next).await.unwrap();
    assert_eq!(rest.items[0].id, seed.environment_id);
    assert!(rest.next.is_none());

    // In use by a session: not deleted. Archived: no new session starts in it.
    seed.session(s).await;
    let used = s.delete_environment(ws, &seed.environment_id).await;
    assert!(matches!(used, Err(Error::Conflict(_))), "{used:?}");
    s.archive_environment(ws, &seed.environment_id)
        .await
        .unwrap();
    let late = s
        .create_session(ws, seed.new_session(None), events(vec![]))
        .await;
    assert!(matches!(late, Err(Error::Conflict(_))), "{late:?}");
    assert_eq!(
        s.list_environments(ws, false, 10, None)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        s.list_environments(ws, true, 10, None)
            .await
            .unwrap()
            .items
            .len(),
        2
    );

    s.delete_environment(ws, &spare.id).await.unwrap();
    let gone = s.get_environment(ws, &spare.id).await;
    assert!(matches!(gone, Err(Error::NotFound(_))));
    let nowhere = NewSession {
        environment_id: spare.id,
        ..seed.new_session(None)
    };
    let nowhere = s.create_session(ws, nowhere, events(vec![])).await;
    assert!(matches!(nowhere, Err(Error::NotFound(_))), "{nowhere:?}");
}

pub async fn a_session_starts_with_its_initial_events(s: &dyn Storage) {
    let seed = seed(s, "default").await;
    let new = seed.new_session(Some("first"));
    let session = s
        .create_session(&seed.ws, new, events(vec![msg("hello")]))
        .await
        .unwrap();
    assert_eq!(session.title.as_deref(), Some("first"));
    assert_eq!(session.metadata.get("k").map(String::as_str), Some("v"));
    assert_eq!(session.agent, seed.agent);
    assert_eq!(session.status, SessionStatus::Idle);
    assert_eq!(s.read(&session.id, 0, 10).await.unwrap().len(), 1);
    let read = s.get_session(&seed.ws, &session.id).await.unwrap();
    // Stats are measured at each read; the rest reads back as created.
    let same = |x: &agentd_wire::Session| {
        let mut x = x.clone();
        x.stats = agentd_wire::session::Stats::default();
        x.usage.active_seconds = None;
        x
    };
    assert_eq!(same(&read), same(&session));
}

pub async fn an_update_is_logged_and_told_to_subscribers_at_once(s: &dyn Storage) {
    let seed = seed(s, "default").await;
    let (ws, sid) = (&seed.ws, seed.session(s).await);
    let mut tail = s.subscribe(&sid);
    let metadata = BTreeMap::from([("k".to_owned(), None), ("n".to_owned(), Some("1".into()))]);
    let updated = s
        .update_session(ws, &sid, Some(Some("renamed".into())), Some(metadata))
        .await
        .unwrap();
    assert_eq!(updated.title.as_deref(), Some("renamed"));
    assert_eq!(
        updated.metadata,
        BTreeMap::from([("n".to_owned(), "1".to_owned())])
    );
    assert!(tail.has_changed().unwrap());
    let seq = *tail.borrow_and_update();
    let last = s.read(&sid, seq - 1, 1).await.unwrap();
    assert_eq!(last[0].event.body.type_name(), "session.updated");
    // No change, no event, nothing told.
    s.update_session(ws, &sid, Some(Some("renamed".into())), None)
        .await
        .unwrap();
    assert!(!tail.has_changed().unwrap());
}

pub async fn sessions_list_by_filter_order_and_page(s: &dyn Storage) {
    let seed = seed(s, "default").await;
    let ws = &seed.ws;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(seed.session(s).await);
    }
    let running = NewEvent::new(EventBody::SessionStatusRunning {});
    s.append(&ids[1], events(vec![running])).await.unwrap();
    assert_eq!(s.running_sessions().await.unwrap(), vec![ids[1].clone()]);
    s.archive_session(ws, &ids[2]).await.unwrap();

    let page = |order, page| SessionFilter {
        order,
        limit: 1,
        page,
        ..SessionFilter::default()
    };
    let mut seen = Vec::new();
    let mut f = page(Order::Asc, None);
    loop {
        let p = s.list_sessions(ws, f.clone()).await.unwrap();
        seen.extend(p.items.into_iter().map(|x| x.id));
        match p.next {
            Some(n) => f = page(Order::Asc, Some(n)),
            None => break,
        }
    }
    assert_eq!(seen, ids[..2], "oldest first, archived left out");
    let newest = s.list_sessions(ws, page(Order::Desc, None)).await.unwrap();
    assert_eq!(newest.items[0].id, ids[1]);
    let f = SessionFilter {
        include_archived: true,
        statuses: vec![SessionStatus::Idle],
        agent_id: Some(seed.agent.id.clone()),
        agent_version: Some(1),
        limit: 10,
        ..SessionFilter::default()
    };
    let idle: Vec<_> = s.list_sessions(ws, f).await.unwrap().items;
    let idle: Vec<_> = idle.into_iter().map(|x| x.id).collect();
    assert_eq!(idle, vec![ids[2].clone(), ids[0].clone()]);
    let other_agent = SessionFilter {
        agent_id: Some("agent_other".into()),
        limit: 10,
        ..SessionFilter::default()
    };
    assert!(
        s.list_sessions(ws, other_agent)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

pub async fn events_page_by_position_and_filter_by_type(s: &dyn Storage) {
    let seed = seed(s, "default").await;
    let (ws, sid) = (&seed.ws, seed.session(s).await);
    for i in 0..5 {
        s.append(&sid, events(vec![msg(&i.to_string())]))
            .await
            .unwrap();
    }
    let hidden = NewEvent::new(EventBody::ToolStarted {
        tool_use_id: "x".into(),
    });
    let running = NewEvent::new(EventBody::SessionStatusRunning {});
    s.append(&sid, events(vec![hidden, running])).await.unwrap();
    let mut f = EventFilter {
        limit: 2,
        order: Order::Asc,
        ..EventFilter::default()
    };
    let mut seen = vec![];
    loop {
        let p = s.list_log_events(ws, &sid, &sid, f.clone()).await.unwrap();
        seen.extend(p.items.iter().map(|e| e.seq));
        match p.next {
            Some(n) => f.page = Some(n),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec![1, 2, 3, 4, 5, 7],
        "internal events are never listed"
    );
    let only = EventFilter {
        limit: 10,
        order: Order::Desc,
        types: vec!["session.status_running".into()],
        ..EventFilter::default()
    };
    let only = s.list_log_events(ws, &sid, &sid, only).await.unwrap();
    assert_eq!(only.items.len(), 1);
    assert_eq!(only.items[0].seq, 7);
    let id = &only.items[0].event.id;
    assert_eq!(s.event_position(&sid, id).await.unwrap(), Some(7));
    assert_eq!(s.event_position(&sid, "sevt_nope").await.unwrap(), None);
    let bad = EventFilter {
        page: Some("nope".into()),
        ..EventFilter::default()
    };
    let bad = s.list_log_events(ws, &sid, &sid, bad).await;
    assert!(matches!(bad, Err(Error::Invalid(_))), "{bad:?}");
}

/// Starts a worker thread running the session's own agent; returns its id.
async fn start_thread(s: &dyn Storage, seed: &Seed, sid: &str) -> String {
    let tid = ids::new(ids::Kind::Thread);
    let created = NewEvent::new(EventBody::SessionThreadCreated {
        session_thread_id: tid.clone(),
        agent_name: "worker".into(),
    })
    .with_private(Private::Thread {
        agent: Box::new(seed.agent.clone()),
    });
    s.append(sid, events(vec![created])).await.unwrap();
    tid
}

pub async fn threads_list_primary_first_and_archive_children_only(s: &dyn Storage) {
    let seed = seed(s, "default").await;
    let (ws, sid) = (&seed.ws, seed.session(s).await);
    let tid = start_thread(s, &seed, &sid).await;
    let primary = ids::primary_thread(&sid);
    let all = s.list_threads(ws, &sid, vec![], 10, None).await.unwrap();
    let listed: Vec<_> = all.items.iter().map(|t| t.id.clone()).collect();
    assert_eq!(listed, vec![primary.clone(), tid.clone()]);
    let first = s.list_threads(ws, &sid, vec![], 1, None).await.unwrap();
    let rest = s
        .list_threads(ws, &sid, vec![], 1, first.next)
        .await
        .unwrap();
    assert_eq!(rest.items[0].id, tid);
    assert_eq!(s.thread_log(ws, &sid, &primary).await.unwrap(), sid);
    assert_eq!(s.thread_log(ws, &sid, &tid).await.unwrap(), tid);
    let child = s.get_thread(ws, &sid, &tid).await.unwrap();
    assert_eq!(child.parent_thread_id.as_deref(), Some(primary.as_str()));
    let refused = s.archive_thread(ws, &sid, &primary).await;
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");
    let archived = s.archive_thread(ws, &sid, &tid).await.unwrap();
    assert!(archived.archived_at.is_some());
    let rows = s.child_threads(&sid).await.unwrap();
    assert!(rows.len() == 1 && rows[0].archived && rows[0].agent_name == "worker");

    let running = NewEvent::new(EventBody::SessionStatusRunning {});
    s.append(&tid, events(vec![running])).await.unwrap();
    assert_eq!(s.running_threads().await.unwrap(), vec![tid.clone()]);
    let f = vec![SessionStatus::Running];
    let only = s.list_threads(ws, &sid, f, 10, None).await.unwrap();
    assert_eq!(only.items.len(), 1);
    assert_eq!(only.items[0].id, tid);
}

pub async fn the_harness_reads_rows_by_log_id(s: &dyn Storage) {
    let seed = seed(s, "default").await;
    let sid = seed.session(s).await;
    let tid = start_thread(s, &seed, &sid).await;
    assert_eq!(s.session_agent(&sid).await.unwrap(), seed.agent);
    assert_eq!(s.session_agent(&tid).await.unwrap(), seed.agent);
    let env = s.session_environment(&tid).await.unwrap();
    assert_eq!(env, EnvironmentConfig::default());
    assert_eq!(s.thread(&sid).await.unwrap(), None);
    let info = s.thread(&tid).await.unwrap().expect("a thread");
    assert_eq!(
        (info.session_id, info.parent_log),
        (sid.clone(), sid.clone())
    );
    let gone = s.session_agent("sesn_gone").await;
    assert!(matches!(gone, Err(CatalogError::NotFound(_))), "{gone:?}");
}

pub async fn a_deleted_session_takes_its_logs_and_tells_subscribers(s: &dyn Storage) {
    let seed = seed(s, "default").await;
    let (ws, sid) = (&seed.ws, seed.session(s).await);
    let tid = start_thread(s, &seed, &sid).await;
    let (mut session_tail, mut thread_tail) = (s.subscribe(&sid), s.subscribe(&tid));
    s.delete_session(ws, &sid).await.unwrap();
    for tail in [&mut session_tail, &mut thread_tail] {
        tail.wait_for(|t| *t == agentd_session::DELETED)
            .await
            .unwrap();
    }
    assert!(matches!(
        s.get_session(ws, &sid).await,
        Err(Error::NotFound(_))
    ));
    assert!(s.read(&sid, 0, 10).await.unwrap().is_empty());
    assert!(s.read(&tid, 0, 10).await.unwrap().is_empty());
    assert!(s.child_threads(&sid).await.unwrap().is_empty());
    let again = s.delete_session(ws, &sid).await;
    assert!(matches!(again, Err(Error::NotFound(_))));
}

pub async fn files_keep_their_bytes_until_deleted_or_expired(s: &dyn Storage) {
    let seed = seed(s, "default").await;
    let ws = &seed.ws;
    let file = |name: &str, expires_at| NewFile {
        filename: name.into(),
        mime_type: "text/plain".into(),
        content: name.as_bytes().to_vec(),
        expires_at,
    };
    let a = s.create_file(ws, file("a.txt", None)).await.unwrap();
    let b = s.create_file(ws, file("b.txt", None)).await.unwrap();
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    let expired = s
        .create_file(ws, file("old.txt", Some(past)))
        .await
        .unwrap();
    assert_eq!(a.size_bytes, 5);
    assert_eq!(s.get_file(ws, &a.id).await.unwrap(), a);
    let (meta, bytes) = s.file_content(ws, &b.id).await.unwrap();
    assert_eq!((meta, bytes), (b.clone(), b"b.txt".to_vec()));
    let gone = s.get_file(ws, &expired.id).await;
    assert!(
        matches!(gone, Err(Error::NotFound(_))),
        "an expired file is gone"
    );
    let first = s.list_files(ws, None, 1, None).await.unwrap();
    assert_eq!(first.items, vec![b.clone()]);
    let rest = s.list_files(ws, None, 1, first.next).await.unwrap();
    assert_eq!(rest.items, vec![a.clone()]);
    assert!(rest.next.is_none(), "the expired file is not listed");
    s.delete_file(ws, &a.id).await.unwrap();
    assert!(matches!(
        s.file_content(ws, &a.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.delete_file(ws, &a.id).await,
        Err(Error::NotFound(_))
    ));
}

pub async fn outputs_are_files_scoped_to_their_session_one_per_path(s: &dyn Storage) {
    use agentd_session::catalog::NewOutput;
    let seed = seed(s, "default").await;
    let ws = &seed.ws;
    let (one, two) = (seed.session(s).await, seed.session(s).await);
    let out = |path: &str, text: &str| NewOutput {
        path: path.into(),
        mime_type: "text/plain".into(),
        sha256: format!("sha-of-{text}"),
        content: text.as_bytes().to_vec(),
    };
    let upload = NewFile {
        filename: "up.txt".into(),
        mime_type: "text/plain".into(),
        content: vec![1],
        expires_at: None,
    };
    let upload = s.create_file(ws, upload).await.unwrap();
    assert_eq!(upload.scope, None);
    s.put_output(&one, out("report.md", "v1")).await.unwrap();
    s.put_output(&one, out("data/t.csv", "a,b")).await.unwrap();
    s.put_output(&two, out("report.md", "other")).await.unwrap();
    let scoped =
        |sid: String| async move { s.list_files(ws, Some(&sid), 100, None).await.unwrap().items };
    let listed = scoped(one.clone()).await;
    let names: Vec<&str> = listed.iter().map(|f| f.filename.as_str()).collect();
    assert_eq!(names, vec!["data/t.csv", "report.md"], "newest first");
    assert!(
        listed
            .iter()
            .all(|f| f.scope == Some(FileScope::session(&one)))
    );
    let first_report = listed[1].clone();
    // The same bytes again (a collection made again after a crash): nothing changes.
    s.put_output(&one, out("report.md", "v1")).await.unwrap();
    assert_eq!(scoped(one.clone()).await, listed);
    // New bytes at the path: a new file takes the old one's place.
    s.put_output(&one, out("report.md", "v2")).await.unwrap();
    let after = scoped(one.clone()).await;
    assert_eq!(after.len(), 2);
    let report = after.iter().find(|f| f.filename == "report.md").unwrap();
    assert_ne!(report.id, first_report.id);
    assert_eq!(s.file_content(ws, &report.id).await.unwrap().1, b"v2");
    assert!(matches!(
        s.get_file(ws, &first_report.id).await,
        Err(Error::NotFound(_))
    ));
    let held = s.outputs(&one).await.unwrap();
    let held: Vec<(&str, &str)> = held
        .iter()
        .map(|h| (h.path.as_str(), h.sha256.as_str()))
        .collect();
    assert_eq!(
        held,
        vec![("data/t.csv", "sha-of-a,b"), ("report.md", "sha-of-v2")]
    );
    // A collected file the user deleted is not collected again from the same bytes; new
    // bytes at its path are a new file.
    let data = after.iter().find(|f| f.filename == "data/t.csv").unwrap();
    s.delete_file(ws, &data.id).await.unwrap();
    assert!(matches!(
        s.get_file(ws, &data.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        s.delete_file(ws, &data.id).await,
        Err(Error::NotFound(_))
    ));
    s.put_output(&one, out("data/t.csv", "a,b")).await.unwrap();
    assert_eq!(scoped(one.clone()).await.len(), 1);
    s.put_output(&one, out("data/t.csv", "c,d")).await.unwrap();
    assert_eq!(scoped(one.clone()).await.len(), 2);
    // Every file of the workspace without a scope; the other session's alone with its own;
    // a scope seen from another workspace holds nothing.
    assert_eq!(
        s.list_files(ws, None, 100, None).await.unwrap().items.len(),
        4
    );
    assert_eq!(scoped(two.clone()).await.len(), 1);
    let other = s.register_key("k2", "other").await.unwrap().id;
    assert!(
        s.list_files(&other, Some(&one), 100, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(matches!(
        s.put_output("sesn_missing", out("x", "x")).await,
        Err(CatalogError::NotFound(_))
    ));
}

pub async fn list_cost_is_kept_exactly_and_counted_in_the_session(s: &dyn Storage) {
    use agentd_wire::usage::{ModelUsage, PICO_USD_PER_CENT};
    let seed = seed(s, "default").await;
    let sid = seed.session(s).await;
    let spend = |cost: u64| {
        NewEvent::new(EventBody::SpanModelRequestEnd {
            model_request_start_id: "sevt_x".into(),
            is_error: None,
            model_usage: ModelUsage {
                input_tokens: 10,
                ..ModelUsage::default()
            },
        })
        .with_private(Private::Cost {
            pico_usd: cost,
            refused: false,
        })
    };
    // Three calls of 0.4 cent: kept exactly, shown as 1 cent (1.2 rounded), not 0 (three 0s).
    for _ in 0..3 {
        s.append(&sid, events(vec![spend(PICO_USD_PER_CENT * 4 / 10)]))
            .await
            .unwrap();
    }
    let shown = s.get_session(&seed.ws, &sid).await.unwrap().usage;
    assert_eq!(shown.input_tokens, 30);
    let cost = shown.list_cost.expect("a list cost");
    assert_eq!((cost.amount.as_str(), cost.currency.as_str()), ("1", "USD"));
    let primary = ids::primary_thread(&sid);
    let thread = s.get_thread(&seed.ws, &sid, &primary).await.unwrap();
    assert_eq!(thread.usage.unwrap().list_cost.unwrap().amount, "1");
    // A worker thread's calls count in its session; the primary thread shows the rest.
    let tid = start_thread(s, &seed, &sid).await;
    s.append(&tid, events(vec![spend(PICO_USD_PER_CENT * 250)]))
        .await
        .unwrap();
    let cents = |u: Option<agentd_wire::Usage>| u.unwrap().list_cost.unwrap().amount;
    let session = s.get_session(&seed.ws, &sid).await.unwrap();
    assert_eq!(cents(Some(session.usage)), "251");
    assert_eq!(
        cents(s.get_thread(&seed.ws, &sid, &tid).await.unwrap().usage),
        "250"
    );
    assert_eq!(
        cents(s.get_thread(&seed.ws, &sid, &primary).await.unwrap().usage),
        "1"
    );
}

pub async fn another_workspace_sees_nothing(s: &dyn Storage) {
    let seed = seed(s, "default").await;
    let sid = seed.session(s).await;
    let file = NewFile {
        filename: "f".into(),
        mime_type: "text/plain".into(),
        content: vec![1],
        expires_at: None,
    };
    let file = s.create_file(&seed.ws, file).await.unwrap();
    let other = s.register_key("k2", "other").await.unwrap().id;
    let not_found = |r: Result<(), Error>| assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
    not_found(s.get_session(&other, &sid).await.map(drop));
    not_found(
        s.update_session(&other, &sid, Some(None), None)
            .await
            .map(drop),
    );
    not_found(s.archive_session(&other, &sid).await.map(drop));
    not_found(s.delete_session(&other, &sid).await);
    not_found(s.get_agent(&other, &seed.agent.id, None).await.map(drop));
    not_found(s.archive_agent(&other, &seed.agent.id).await.map(drop));
    not_found(
        s.get_environment(&other, &seed.environment_id)
            .await
            .map(drop),
    );
    not_found(s.delete_environment(&other, &seed.environment_id).await);
    not_found(s.get_file(&other, &file.id).await.map(drop));
    not_found(s.delete_file(&other, &file.id).await);
    let primary = ids::primary_thread(&sid);
    not_found(s.thread_log(&other, &sid, &primary).await.map(drop));
    not_found(
        s.list_log_events(&other, &sid, &sid, EventFilter::default())
            .await
            .map(drop),
    );
    assert!(
        s.list_agents(&other, limit(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        s.list_environments(&other, true, 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        s.list_files(&other, None, 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let all = SessionFilter {
        include_archived: true,
        limit: 10,
        ..SessionFilter::default()
    };
    assert!(s.list_sessions(&other, all).await.unwrap().items.is_empty());
}

pub async fn a_lease_has_one_holder_until_released_or_expired(s: &dyn Storage) {
    use std::time::Duration;
    let seed = seed(s, "default").await;
    let sid = seed.session(s).await;
    let long = Duration::from_secs(60);
    assert!(s.acquire(&sid, "a", long).await.unwrap());
    assert!(!s.acquire(&sid, "b", long).await.unwrap(), "held by a");
    assert!(
        s.acquire(&sid, "a", long).await.unwrap(),
        "a extends its own"
    );
    s.release(&sid, "b").await.unwrap();
    assert!(
        !s.acquire(&sid, "b", long).await.unwrap(),
        "only the holder releases"
    );
    s.release(&sid, "a").await.unwrap();
    assert!(
        s.acquire(&sid, "b", Duration::from_millis(50))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        s.acquire(&sid, "c", long).await.unwrap(),
        "an expired lease is free"
    );
}

pub async fn running_logs_no_live_lease_holds_are_orphaned(s: &dyn Storage) {
    use std::time::Duration;
    let seed = seed(s, "default").await;
    let (idle, running) = (seed.session(s).await, seed.session(s).await);
    let tid = start_thread(s, &seed, &running).await;
    for log in [&running, &tid] {
        let run = NewEvent::new(EventBody::SessionStatusRunning {});
        s.append(log, events(vec![run])).await.unwrap();
    }
    let mut orphans = s.orphaned().await.unwrap();
    orphans.sort();
    let mut expected = vec![running.clone(), tid.clone()];
    expected.sort();
    assert_eq!(orphans, expected, "{idle} is idle");
    assert!(
        s.acquire(&running, "a", Duration::from_millis(50))
            .await
            .unwrap()
    );
    assert_eq!(s.orphaned().await.unwrap(), vec![tid.clone()]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        s.orphaned().await.unwrap().len(),
        2,
        "its holder stopped renewing"
    );
}

pub async fn nudges_reach_every_listener(s: &dyn Storage) {
    use agentd_session::lease::Nudge;
    let mut nudges = s.nudges();
    s.nudge("sesn_x", Nudge::Interrupt).await.unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), nudges.recv()).await;
    assert_eq!(
        got.expect("in time").unwrap(),
        ("sesn_x".to_owned(), Nudge::Interrupt)
    );
}

/// The harness queues work for a session at most once while an item lives; of two pollers
/// racing for it, one gets it; a lapsed lease puts it back; a stopped item makes way for a new one.
pub async fn a_session_has_one_live_work_item_and_one_poller_wins_it(s: &dyn Storage) {
    use crate::work::WorkItem;
    let seed = seed(s, "w").await;
    let sid = seed.session(s).await;
    let queued = futures::future::join_all((0..4).map(|_| s.queue_session_work(&sid))).await;
    let made = queued
        .iter()
        .filter(|r| matches!(r, Ok(agentd_session::catalog::WorkQueued::Queued)))
        .count();
    assert_eq!(made, 1, "concurrent queueing makes one item: {queued:?}");
    let live = s
        .live_work(Some(&seed.environment_id))
        .await
        .expect("live work");
    assert_eq!(live.len(), 1);
    let (item, ws) = (live[0].clone(), live[0].workspace_id.clone());
    assert_eq!(ws, seed.ws, "the item is in its session's workspace");
    assert_eq!(item.session_id, sid);
    let now = chrono::Utc::now();
    let reclaim = chrono::Duration::seconds(5);
    let race = futures::future::join_all((0..4).map(|n| {
        let id = item.id.clone();
        async move {
            s.update_work(
                &id,
                Box::new(move |i| i.hand_out(now, reclaim, None, format!("h{n}"))),
            )
            .await
            .expect("update")
            .1
        }
    }))
    .await;
    assert_eq!(
        race.iter().filter(|t| **t).count(),
        1,
        "one poller wins: {race:?}"
    );
    s.update_work(
        &item.id,
        Box::new(move |i| i.acknowledge(now, None).is_ok()),
    )
    .await
    .expect("ack");
    let later = now + chrono::Duration::seconds(i64::from(item.ttl_seconds) + 1);
    let (back, changed) = s
        .update_work(&item.id, Box::new(move |i| i.requeue_lapsed(later)))
        .await
        .expect("requeue");
    assert!(changed && back.state == agentd_wire::work::WorkState::Queued);
    assert_eq!(s.get_work(&item.id).await.expect("get").claim, 2);
    s.update_work(
        &item.id,
        Box::new(move |i| i.request_stop(later, true).is_ok()),
    )
    .await
    .expect("stop");
    let (again, made) = s
        .queue_work(WorkItem::new("", &seed.environment_id, &sid, 60, later))
        .await
        .expect("queue after a stop");
    assert!(made && again.id != item.id);
    let listed = s
        .list_work(&seed.environment_id, 1, None)
        .await
        .expect("list");
    assert_eq!(listed.items[0].id, again.id, "newest first");
    let next = s
        .list_work(&seed.environment_id, 1, listed.next.clone())
        .await
        .expect("page 2");
    assert_eq!(next.items[0].id, item.id);
    assert_eq!(s.session_work(&sid).await.expect("session work").len(), 2);
    s.delete_session(&seed.ws, &sid).await.expect("delete");
    assert!(matches!(
        s.get_work(&item.id).await,
        Err(Error::NotFound(_))
    ));
}

/// Environment keys authenticate for their environment until revoked, and are stored hashed.
/// A session's resources are stored with it, kept in order, refused on a colliding mount path,
/// and removed by id; another workspace cannot touch them.
pub async fn session_resources_are_kept_on_the_session(s: &dyn Storage) {
    use agentd_wire::resource::{FileResource, Resource};
    let file = |id: &str, path: &str| {
        Resource::File(FileResource {
            id: id.into(),
            file_id: "file_x".into(),
            mount_path: path.into(),
            created_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            updated_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        })
    };
    let mine = seed(s, "r").await;
    let mut new = mine.new_session(None);
    new.resources = vec![file("sesrsc_1", "/data/a")];
    let sid = s
        .create_session(&mine.ws, new, events(vec![]))
        .await
        .expect("create")
        .id;
    let got = s.get_session(&mine.ws, &sid).await.unwrap();
    assert_eq!(got.resources, vec![file("sesrsc_1", "/data/a")]);
    let after = s
        .add_session_resource(&mine.ws, &sid, file("sesrsc_2", "/data/b"), None)
        .await
        .expect("add");
    assert_eq!(
        after.resources.iter().map(|r| r.id()).collect::<Vec<_>>(),
        ["sesrsc_1", "sesrsc_2"]
    );
    let clash = s
        .add_session_resource(&mine.ws, &sid, file("sesrsc_3", "/data/a/inner"), None)
        .await;
    assert!(matches!(clash, Err(crate::Error::Invalid(_))), "{clash:?}");
    let other = seed(s, "r2").await.ws;
    assert!(matches!(
        s.delete_session_resource(&other, &sid, "sesrsc_1").await,
        Err(crate::Error::NotFound(_))
    ));
    let gone = s
        .delete_session_resource(&mine.ws, &sid, "sesrsc_1")
        .await
        .expect("delete");
    assert_eq!(gone.id(), "sesrsc_1");
    assert!(matches!(
        s.delete_session_resource(&mine.ws, &sid, "sesrsc_1").await,
        Err(crate::Error::NotFound(_))
    ));
    let listed = s
        .list_sessions(
            &mine.ws,
            SessionFilter {
                limit: 10,
                ..SessionFilter::default()
            },
        )
        .await
        .unwrap();
    let row = listed.items.iter().find(|x| x.id == sid).unwrap();
    assert_eq!(row.resources, vec![file("sesrsc_2", "/data/b")]);
}

/// A repository resource's sealed token is stored apart from the resource, replaced by
/// `set_resource_token` (which moves `updated_at`), resealed with the credentials, and gone
/// with its resource or its session.
pub async fn repository_tokens_are_kept_apart_and_go_with_their_resource(s: &dyn Storage) {
    use agentd_wire::resource::{RepositoryResource, Resource};
    let at = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let repo = |id: &str, path: &str| {
        Resource::GithubRepository(RepositoryResource {
            id: id.into(),
            url: "https://git.example/acme/w".into(),
            mount_path: path.into(),
            checkout: None,
            created_at: at,
            updated_at: at,
        })
    };
    let mine = seed(s, "t").await;
    let mut new = mine.new_session(None);
    new.resources = vec![
        repo("sesrsc_t1", "/workspace/a"),
        repo("sesrsc_t2", "/workspace/b"),
    ];
    new.sealed_tokens = vec![("sesrsc_t1".into(), b"sealed-1".to_vec())];
    let sid = s
        .create_session(&mine.ws, new, events(vec![]))
        .await
        .expect("create")
        .id;
    let tokens = |m: agentd_session::catalog::Mounts| {
        m.repositories
            .into_iter()
            .map(|r| (r.resource_id, r.sealed_token))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        tokens(s.session_mounts(&sid).await.unwrap()),
        [
            ("sesrsc_t1".to_owned(), Some(b"sealed-1".to_vec())),
            ("sesrsc_t2".to_owned(), None)
        ]
    );
    let r = s
        .set_resource_token(&mine.ws, &sid, "sesrsc_t2", b"sealed-2".to_vec())
        .await
        .expect("retoken");
    assert!(
        matches!(&r, Resource::GithubRepository(g) if g.updated_at > at),
        "{r:?}"
    );
    s.add_session_resource(
        &mine.ws,
        &sid,
        repo("sesrsc_t3", "/workspace/c"),
        Some(b"sealed-3".to_vec()),
    )
    .await
    .expect("add");
    let other = seed(s, "t2").await.ws;
    assert!(matches!(
        s.set_resource_token(&other, &sid, "sesrsc_t2", b"x".to_vec())
            .await,
        Err(Error::NotFound(_))
    ));
    // Rotation reseals every token with the credentials.
    let n = s
        .reseal_credentials(
            Box::new(|id, sealed| Ok([id.as_bytes(), b":", sealed].concat())),
            b"check".to_vec(),
        )
        .await
        .unwrap();
    assert!(n >= 3, "{n}");
    assert_eq!(
        tokens(s.session_mounts(&sid).await.unwrap()),
        [
            ("sesrsc_t1".to_owned(), Some(b"sesrsc_t1:sealed-1".to_vec())),
            ("sesrsc_t2".to_owned(), Some(b"sesrsc_t2:sealed-2".to_vec())),
            ("sesrsc_t3".to_owned(), Some(b"sesrsc_t3:sealed-3".to_vec())),
        ]
    );
    s.delete_session_resource(&mine.ws, &sid, "sesrsc_t1")
        .await
        .unwrap();
    // The token went with its resource: a resource added again under its id has none.
    s.add_session_resource(&mine.ws, &sid, repo("sesrsc_t1", "/workspace/a"), None)
        .await
        .unwrap();
    let after = tokens(s.session_mounts(&sid).await.unwrap());
    assert!(after.contains(&("sesrsc_t1".to_owned(), None)), "{after:?}");
    s.delete_session(&mine.ws, &sid).await.unwrap();
    // Nothing of the session's is left to reseal.
    let left = s
        .reseal_credentials(Box::new(|_, sealed| Ok(sealed.to_vec())), b"check".to_vec())
        .await
        .unwrap();
    assert_eq!(left, n - 3, "the deleted session's tokens are gone");
}

/// The quota the Files API check below expects its store to have been opened with.
pub const SMALL_FILES_QUOTA: crate::FilesQuota = crate::FilesQuota {
    bytes: 100,
    files: 3,
};

/// Uploads and collected outputs count against one workspace quota (`SMALL_FILES_QUOTA`):
/// over it an upload is refused and an output is not stored; replacing an output frees what it
/// held; deleting frees room; another workspace has its own.
pub async fn files_quota_counts_uploads_and_outputs(s: &dyn Storage) {
    use agentd_session::catalog::{Error as LogError, NewOutput};
    let up = |n: usize| NewFile {
        filename: "f.bin".into(),
        mime_type: "application/octet-stream".into(),
        content: vec![7; n],
        expires_at: None,
    };
    let out = |path: &str, n: usize, tag: &str| NewOutput {
        path: path.into(),
        mime_type: "text/plain".into(),
        sha256: tag.into(),
        content: vec![1; n],
    };
    let mine = seed(s, "q").await;
    let sid = mine.session(s).await;
    let a = s
        .create_file(&mine.ws, up(60))
        .await
        .expect("within the quota");
    let over = s.create_file(&mine.ws, up(41)).await;
    assert!(
        matches!(over, Err(Error::Invalid(ref m)) if m.contains("quota")),
        "{over:?}"
    );
    s.put_output(&sid, out("r.txt", 30, "h1"))
        .await
        .expect("an output within it");
    let full = s.put_output(&sid, out("s.txt", 20, "h2")).await;
    assert!(matches!(full, Err(LogError::Quota(_))), "{full:?}");
    // The same path with other bytes replaces what it held: 60 + 40 fits.
    s.put_output(&sid, out("r.txt", 40, "h3"))
        .await
        .expect("a replacement");
    // Three files at most.
    s.delete_file(&mine.ws, &a.id).await.unwrap();
    s.create_file(&mine.ws, up(1)).await.unwrap();
    s.create_file(&mine.ws, up(1)).await.unwrap();
    let many = s.create_file(&mine.ws, up(1)).await;
    assert!(
        matches!(many, Err(Error::Invalid(ref m)) if m.contains("quota")),
        "{many:?}"
    );
    let other = seed(s, "q2").await;
    s.create_file(&other.ws, up(100))
        .await
        .expect("another workspace's own quota");
}

/// Each worker polling an environment counts once, within the window, whichever process saw it.
pub async fn polling_workers_are_counted_once_each_within_the_window(s: &dyn Storage) {
    let (a, b) = ("env_pollers_a", "env_pollers_b");
    s.saw_poller(a, "w1", 1_000, 0).await.expect("record");
    s.saw_poller(a, "w1", 5_000, 0).await.expect("record again");
    s.saw_poller(a, "w2", 6_000, 0).await.expect("record");
    s.saw_poller(b, "w1", 6_000, 0).await.expect("record");
    assert_eq!(s.pollers(a, 0).await.unwrap(), 2);
    assert_eq!(
        s.pollers(a, 5_500).await.unwrap(),
        1,
        "w1's last poll is older"
    );
    assert_eq!(s.pollers(b, 0).await.unwrap(), 1);
    // A new poll prunes what is older than its horizon.
    s.saw_poller(b, "w3", 100_000, 50_000)
        .await
        .expect("record");
    assert_eq!(s.pollers(a, 0).await.unwrap(), 0);
    assert_eq!(s.pollers(b, 0).await.unwrap(), 1);
}

pub async fn environment_keys_are_hashed_listed_and_revoked(s: &dyn Storage) {
    let seed = seed(s, "k").await;
    let env = &seed.environment_id;
    let (info, key) = s
        .create_environment_key(env, Some("laptop"))
        .await
        .expect("create");
    assert!(crate::work::is_environment_key(&key));
    let owner = s.authenticate_environment_key(&key).await.expect("auth");
    assert_eq!(
        owner.map(|o| (o.workspace_id, o.environment_id)),
        Some((seed.ws.clone(), env.clone()))
    );
    assert_eq!(
        s.authenticate(&key).await.expect("api auth"),
        None,
        "not an API key"
    );
    assert!(matches!(
        s.create_environment_key("env_missing", None).await,
        Err(Error::NotFound(_))
    ));
    let listed = s.list_environment_keys(env).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name.as_deref(), Some("laptop"));
    let revoked = s
        .revoke_environment_key(env, &info.id)
        .await
        .expect("revoke");
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        s.authenticate_environment_key(&key).await.expect("auth"),
        None
    );
    s.revoke_environment_key(env, &info.id)
        .await
        .expect("revoke twice");
}

/// A second `user.tool_result` for one call is refused by the store itself.
pub async fn a_worker_answers_a_call_once(s: &dyn Storage) {
    let seed = seed(s, "a").await;
    let sid = seed.session(s).await;
    let answer = || {
        NewEvent::new(EventBody::UserToolResult {
            tool_use_id: "sevt_call".into(),
            content: Some(vec![ContentBlock::text("ok")]),
            is_error: None,
            session_thread_id: None,
        })
    };
    s.append(&sid, events(vec![answer()]))
        .await
        .expect("first answer");
    assert!(matches!(
        s.append(&sid, events(vec![answer()])).await,
        Err(agentd_session::Error::Refused(_))
    ));
}

fn vault(display_name: &str) -> crate::VaultMake {
    let name = display_name.to_owned();
    Box::new(move |id, now| Vault {
        id,
        kind: VaultTag::Vault,
        display_name: name,
        metadata: BTreeMap::new(),
        created_at: now,
        updated_at: now,
        archived_at: None,
    })
}

/// A bearer credential for `url` whose "sealed" bytes are `sealed` (the catalog keeps them
/// as they come).
fn credential(vault: &str, url: &str, sealed: &[u8]) -> crate::CredentialMake {
    let (vault, url, sealed) = (vault.to_owned(), url.to_owned(), sealed.to_vec());
    Box::new(move |id, now| {
        Ok(StoredCredential {
            credential: Credential {
                id,
                kind: CredentialTag::VaultCredential,
                vault_id: vault,
                display_name: None,
                auth: CredentialAuth::StaticBearer {
                    mcp_server_url: url,
                },
                metadata: BTreeMap::new(),
                created_at: now,
                updated_at: now,
                archived_at: None,
            },
            sealed,
        })
    })
}

pub async fn vaults_update_archive_list_and_delete(s: &dyn Storage) {
    let ws = &seed(s, "default").await.ws;
    let a = s.create_vault(ws, vault("a")).await.unwrap();
    let b = s.create_vault(ws, vault("b")).await.unwrap();
    assert_eq!(s.get_vault(ws, &a.id).await.unwrap(), a);
    let same = s
        .update_vault(ws, &a.id, Box::new(|_| Ok(())))
        .await
        .unwrap();
    assert_eq!(same.updated_at, a.updated_at, "no change, no move");
    let renamed = s
        .update_vault(
            ws,
            &a.id,
            Box::new(|v| {
                v.display_name = "renamed".into();
                Ok(())
            }),
        )
        .await
        .unwrap();
    assert_eq!(s.get_vault(ws, &a.id).await.unwrap(), renamed);
    let page = s.list_vaults(ws, false, 1, None).await.unwrap();
    assert_eq!(page.items[0].id, b.id, "newest first");
    let rest = s.list_vaults(ws, false, 1, page.next).await.unwrap();
    assert_eq!(rest.items[0].id, a.id);
    assert!(rest.next.is_none());

    // Archiving a vault archives its credentials and drops their sealed secrets.
    let c = s
        .create_credential(
            ws,
            &b.id,
            credential(&b.id, "https://m.example/", b"sealed"),
        )
        .await
        .unwrap();
    let archived = s.archive_vault(ws, &b.id).await.unwrap();
    assert!(archived.archived_at.is_some());
    let again = s.archive_vault(ws, &b.id).await.unwrap();
    assert_eq!(again.archived_at, archived.archived_at, "archived once");
    let c = s.get_credential(ws, &b.id, &c.credential.id).await.unwrap();
    assert!(c.credential.archived_at.is_some() && c.sealed.is_empty());
    let late = s.update_vault(ws, &b.id, Box::new(|_| Ok(()))).await;
    assert!(matches!(late, Err(Error::Conflict(_))), "{late:?}");
    let late = s
        .create_credential(ws, &b.id, credential(&b.id, "https://n.example/", b"x"))
        .await;
    assert!(matches!(late, Err(Error::Conflict(_))), "{late:?}");
    assert_eq!(
        s.list_vaults(ws, false, 10, None)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        s.list_vaults(ws, true, 10, None).await.unwrap().items.len(),
        2
    );

    // A deleted vault takes its credentials along.
    s.delete_vault(ws, &b.id).await.unwrap();
    assert!(matches!(
        s.get_vault(ws, &b.id).await,
        Err(Error::NotFound(_))
    ));
    let gone = s.get_credential(ws, &b.id, &c.credential.id).await;
    assert!(matches!(gone, Err(Error::NotFound(_))), "{gone:?}");
    let none = s.list_credentials(ws, &b.id, true, 10, None).await;
    assert!(matches!(none, Err(Error::NotFound(_))), "{none:?}");
}

pub async fn credentials_keep_their_sealed_bytes_one_live_per_server(s: &dyn Storage) {
    let ws = &seed(s, "default").await.ws;
    let v = s.create_vault(ws, vault("v")).await.unwrap();
    let url = "https://mcp.example/";
    let c = s
        .create_credential(ws, &v.id, credential(&v.id, url, &[0, 1, 2, 255]))
        .await
        .unwrap();
    assert!(c.credential.id.starts_with("vcrd_"));
    assert_eq!(
        s.get_credential(ws, &v.id, &c.credential.id).await.unwrap(),
        c
    );
    let twin = s
        .create_credential(ws, &v.id, credential(&v.id, url, b"twin"))
        .await;
    assert!(matches!(twin, Err(Error::Conflict(_))), "{twin:?}");
    let missing = s
        .create_credential(ws, "vlt_missing", credential("vlt_missing", url, b"x"))
        .await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
    let refused = s
        .create_credential(
            ws,
            &v.id,
            Box::new(|_, _| Err(Error::Invalid("bad input".into()))),
        )
        .await;
    assert!(matches!(refused, Err(Error::Invalid(_))), "{refused:?}");

    let same = s
        .update_credential(ws, &v.id, &c.credential.id, Box::new(|_| Ok(())))
        .await
        .unwrap();
    assert_eq!(same, c, "no change, no move");
    let resealed = s
        .update_credential(
            ws,
            &v.id,
            &c.credential.id,
            Box::new(|c| {
                c.sealed = b"new".to_vec();
                Ok(())
            }),
        )
        .await
        .unwrap();
    assert_eq!(resealed.sealed, b"new");
    assert!(resealed.credential.updated_at > c.credential.updated_at);
    let failed = s
        .update_credential(
            ws,
            &v.id,
            &c.credential.id,
            Box::new(|c| {
                c.sealed = b"lost".to_vec();
                Err(Error::Invalid("no".into()))
            }),
        )
        .await;
    assert!(matches!(failed, Err(Error::Invalid(_))));
    let kept = s.get_credential(ws, &v.id, &c.credential.id).await.unwrap();
    assert_eq!(kept.sealed, b"new", "a failed edit stores nothing");

    // Archived: secrets dropped, no more updates, and the server is free for a new one.
    let archived = s
        .archive_credential(ws, &v.id, &c.credential.id)
        .await
        .unwrap();
    assert!(archived.sealed.is_empty() && archived.credential.archived_at.is_some());
    let late = s
        .update_credential(ws, &v.id, &c.credential.id, Box::new(|_| Ok(())))
        .await;
    assert!(matches!(late, Err(Error::Conflict(_))), "{late:?}");
    let next = s
        .create_credential(ws, &v.id, credential(&v.id, url, b"next"))
        .await
        .unwrap();
    let other = s
        .create_credential(ws, &v.id, credential(&v.id, "https://other.example/", b"o"))
        .await
        .unwrap();
    let live = s.list_credentials(ws, &v.id, false, 1, None).await.unwrap();
    assert_eq!(
        live.items[0].credential.id, other.credential.id,
        "newest first"
    );
    let rest = s
        .list_credentials(ws, &v.id, false, 1, live.next)
        .await
        .unwrap();
    assert_eq!(rest.items, vec![next.clone()]);
    assert!(rest.next.is_none());
    let all = s.list_credentials(ws, &v.id, true, 10, None).await.unwrap();
    assert_eq!(all.items.len(), 3);

    s.delete_credential(ws, &v.id, &next.credential.id)
        .await
        .unwrap();
    let gone = s.get_credential(ws, &v.id, &next.credential.id).await;
    assert!(matches!(gone, Err(Error::NotFound(_))));
}

pub async fn vaults_of_another_workspace_are_unknown(s: &dyn Storage) {
    let ws = &seed(s, "default").await.ws;
    let v = s.create_vault(ws, vault("v")).await.unwrap();
    let next = s
        .create_credential(ws, &v.id, credential(&v.id, "https://m.example/", b"x"))
        .await
        .unwrap();
    let theirs = &seed(s, "other").await.ws;
    assert!(matches!(
        s.get_vault(theirs, &v.id).await,
        Err(Error::NotFound(_))
    ));
    let peek = s.get_credential(theirs, &v.id, &next.credential.id).await;
    assert!(matches!(peek, Err(Error::NotFound(_))), "{peek:?}");
    assert!(
        s.list_vaults(theirs, true, 10, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let poke = s
        .create_credential(theirs, &v.id, credential(&v.id, "https://x.example/", b"x"))
        .await;
    assert!(matches!(poke, Err(Error::NotFound(_))), "{poke:?}");

    let list = s.list_credentials(theirs, &v.id, true, 10, None).await;
    assert!(matches!(list, Err(Error::NotFound(_))), "{list:?}");
}

pub async fn sessions_keep_their_vaults_and_refuse_unknown_or_archived_ones(s: &dyn Storage) {
    let mine = seed(s, "default").await;
    let ws = &mine.ws;
    let a = s.create_vault(ws, vault("a")).await.unwrap();
    let b = s.create_vault(ws, vault("b")).await.unwrap();
    let new = NewSession {
        vault_ids: vec![a.id.clone(), b.id.clone()],
        ..mine.new_session(None)
    };
    let made = s.create_session(ws, new, events(vec![])).await.unwrap();
    assert_eq!(made.vault_ids, vec![a.id.clone(), b.id.clone()]);
    let got = s.get_session(ws, &made.id).await.unwrap();
    assert_eq!(got.vault_ids, made.vault_ids);
    // What the harness reads to hand the edge a credential.
    let seen = s.session_vaults(&made.id).await.unwrap();
    assert_eq!(seen.workspace_id, *ws);
    assert_eq!(seen.vault_ids, made.vault_ids);
    let gone = s.session_vaults("sesn_missing").await;
    assert!(matches!(gone, Err(CatalogError::NotFound(_))), "{gone:?}");

    let before = s.list_sessions(
        ws,
        SessionFilter {
            limit: 10,
            ..SessionFilter::default()
        },
    );
    let before = before.await.unwrap().items.len();
    let unknown = NewSession {
        vault_ids: vec![a.id.clone(), "vlt_missing".into()],
        ..mine.new_session(None)
    };
    let unknown = s.create_session(ws, unknown, events(vec![])).await;
    assert!(
        matches!(&unknown, Err(Error::NotFound(m)) if m.contains("vault_ids[1]")),
        "{unknown:?}"
    );
    s.archive_vault(ws, &b.id).await.unwrap();
    let archived = NewSession {
        vault_ids: vec![b.id.clone()],
        ..mine.new_session(None)
    };
    let archived = s.create_session(ws, archived, events(vec![])).await;
    assert!(
        matches!(&archived, Err(Error::Invalid(m)) if m.contains("vault_ids[0]")),
        "{archived:?}"
    );
    let theirs = seed(s, "other").await;
    let foreign = NewSession {
        vault_ids: vec![a.id.clone()],
        ..theirs.new_session(None)
    };
    let foreign = s.create_session(&theirs.ws, foreign, events(vec![])).await;
    assert!(matches!(foreign, Err(Error::NotFound(_))), "{foreign:?}");
    let after = s.list_sessions(
        ws,
        SessionFilter {
            limit: 10,
            ..SessionFilter::default()
        },
    );
    assert_eq!(after.await.unwrap().items.len(), before, "no session made");
}

pub async fn resealing_is_all_or_nothing(s: &dyn Storage) {
    let ws = &seed(s, "default").await.ws;
    assert_eq!(s.vault_key_check().await.unwrap(), None);
    assert_eq!(
        s.init_vault_key_check(b"one".to_vec()).await.unwrap(),
        b"one"
    );
    assert_eq!(
        s.init_vault_key_check(b"two".to_vec()).await.unwrap(),
        b"one",
        "the first check stays"
    );
    let v = s.create_vault(ws, vault("v")).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let c = s
            .create_credential(
                ws,
                &v.id,
                credential(
                    &v.id,
                    &format!("https://m{i}.example/"),
                    format!("old{i}").as_bytes(),
                ),
            )
            .await
            .unwrap();
        ids.push(c.credential.id);
    }
    s.archive_credential(ws, &v.id, &ids[2]).await.unwrap();

    // A failure halfway leaves every secret and the check as they were.
    let mut seen = 0;
    let failed = s
        .reseal_credentials(
            Box::new(move |_, old| {
                seen += 1;
                if seen == 2 {
                    return Err(Error::Storage("cannot open".into()));
                }
                Ok([b"new-".as_slice(), old].concat())
            }),
            b"check-2".to_vec(),
        )
        .await;
    assert!(failed.is_err());
    assert_eq!(s.vault_key_check().await.unwrap().unwrap(), b"one");
    for (i, id) in ids.iter().take(2).enumerate() {
        let c = s.get_credential(ws, &v.id, id).await.unwrap();
        assert_eq!(c.sealed, format!("old{i}").as_bytes());
    }

    let n = s
        .reseal_credentials(
            Box::new(|id, old| Ok([id.as_bytes(), b":", old].concat())),
            b"check-2".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(n, 2, "archived credentials hold nothing to reseal");
    assert_eq!(s.vault_key_check().await.unwrap().unwrap(), b"check-2");
    for (i, id) in ids.iter().take(2).enumerate() {
        let c = s.get_credential(ws, &v.id, id).await.unwrap();
        assert_eq!(c.sealed, format!("{id}:old{i}").as_bytes());
    }
    let archived = s.get_credential(ws, &v.id, &ids[2]).await.unwrap();
    assert!(archived.sealed.is_empty());
}

/// One `#[tokio::test]` per check, on a backend `$fresh().await` makes: `None` skips the test,
/// `Some((storage, keep))` runs it, holding `keep` (a temporary directory, say) until it ends.
#[macro_export]
macro_rules! catalog_conformance_tests {
    ($fresh:path) => {
        $crate::catalog_conformance_tests!(@each $fresh;
            keys_authenticate_into_their_workspace,
            agent_updates_make_versions_and_check_the_expected_one,
            agents_concurrent_updates_each_make_a_version,
            archived_agents_are_listed_on_request_and_refuse_updates,
            environments_update_archive_list_and_delete,
            a_session_starts_with_its_initial_events,
            an_update_is_logged_and_told_to_subscribers_at_once,
            sessions_list_by_filter_order_and_page,
            events_page_by_position_and_filter_by_type,
            threads_list_primary_first_and_archive_children_only,
            the_harness_reads_rows_by_log_id,
            a_deleted_session_takes_its_logs_and_tells_subscribers,
            files_keep_their_bytes_until_deleted_or_expired,
            another_workspace_sees_nothing,
            outputs_are_files_scoped_to_their_session_one_per_path,
            list_cost_is_kept_exactly_and_counted_in_the_session,
            a_lease_has_one_holder_until_released_or_expired,
            running_logs_no_live_lease_holds_are_orphaned,
            nudges_reach_every_listener,
            a_session_has_one_live_work_item_and_one_poller_wins_it,
            environment_keys_are_hashed_listed_and_revoked,
            polling_workers_are_counted_once_each_within_the_window,
            session_resources_are_kept_on_the_session,
            repository_tokens_are_kept_apart_and_go_with_their_resource,
            a_worker_answers_a_call_once,
            vaults_update_archive_list_and_delete,
            credentials_keep_their_sealed_bytes_one_live_per_server,
            vaults_of_another_workspace_are_unknown,
            sessions_keep_their_vaults_and_refuse_unknown_or_archived_ones,
            resealing_is_all_or_nothing
        );
    };
    (@each $fresh:path; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some((storage, _keep)) = $fresh().await else { return };
                $crate::conformance::$check(&storage).await;
            }
        )*
    };
}
