//! What every `SessionLog` backend must do, as tests any backend runs against itself.
//!
//! Each check is a `pub async fn` taking the backend as `&dyn SessionLog` and a [`Fixture`]
//! that makes what the log cannot make through its own interface (a session row) and reads
//! what it does not show (a session's usage, a thread's row). A backend's tests call each
//! check from a `#[tokio::test]` of their own, on a fresh database. Checks panic on failure.

use std::time::Duration;

use agentd_wire::agent::SessionAgent;
use agentd_wire::usage::ModelUsage;
use agentd_wire::{ContentBlock, EventBody, SessionStatus, Usage, ids};
use async_trait::async_trait;

use crate::{Error, NewEvent, Private, Refusal, SessionLog, at_tail, events};

/// What a check needs of a backend beyond `SessionLog`.
#[async_trait]
pub trait Fixture: Sync {
    /// A new session row (idle, empty log) and its id.
    async fn session(&self) -> String;
    /// The usage a session's row shows.
    async fn usage(&self, session_id: &str) -> Usage;
    /// A worker thread's row as (session id, parent thread id), if it exists.
    async fn thread(&self, thread_id: &str) -> Option<(String, String)>;
}

fn msg(text: &str) -> NewEvent {
    NewEvent::new(EventBody::UserMessage {
        content: vec![ContentBlock::text(text)],
    })
}

fn spend(input_tokens: u64) -> NewEvent {
    NewEvent::new(EventBody::SpanModelRequestEnd {
        model_request_start_id: "sevt_x".into(),
        is_error: None,
        model_usage: ModelUsage {
            input_tokens,
            ..ModelUsage::default()
        },
    })
}

fn answer(call: &str) -> NewEvent {
    NewEvent::new(EventBody::UserCustomToolResult {
        custom_tool_use_id: call.into(),
        content: None,
        is_error: None,
        session_thread_id: None,
    })
}

/// A `session.thread_created` naming a new worker thread, and that thread's id.
fn thread_created() -> (String, NewEvent) {
    let tid = ids::new(ids::Kind::Thread);
    let agent: SessionAgent = serde_json::from_value(serde_json::json!({
        "id": "agent_w", "type": "agent", "version": 1, "name": "worker",
        "model": {"id": "scripted/echo"}, "tools": [], "mcp_servers": [], "skills": [],
        "execution_identity": null
    }))
    .expect("a valid agent");
    let e = NewEvent::new(EventBody::SessionThreadCreated {
        session_thread_id: tid.clone(),
        agent_name: "worker".into(),
    })
    .with_private(Private::Thread {
        agent: Box::new(agent),
    });
    (tid, e)
}

/// The positions of a log, read back in full.
async fn positions(log: &dyn SessionLog, log_id: &str) -> Vec<u64> {
    let stored = log.read(log_id, 0, 10_000).await.expect("read");
    stored.iter().map(|e| e.seq).collect()
}

fn one_to(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

/// Appends from many tasks at once to one log get positions 1, 2, … with no gap.
pub async fn positions_are_gapless_under_concurrent_appends(log: &dyn SessionLog, f: &dyn Fixture) {
    let sid = f.session().await;
    let appends = (0..50).map(|i| log.append(&sid, events(vec![msg(&format!("m{i}"))])));
    let heads = futures::future::join_all(appends).await;
    let mut tails: Vec<u64> = heads
        .into_iter()
        .map(|r| r.expect("append").0.last_seq)
        .collect();
    tails.sort_unstable();
    assert_eq!(tails, one_to(50), "each append saw its own tail");
    assert_eq!(positions(log, &sid).await, one_to(50));
    assert_eq!(log.head(&sid).await.expect("head").last_seq, 50);
}

/// Concurrent appends to several sessions, and to a session and its thread (each append to
/// the thread also counts tokens in the session; each append to the session also delivers
/// into the thread), keep every log gapless.
pub async fn positions_are_gapless_across_logs(log: &dyn SessionLog, f: &dyn Fixture) {
    let (a, b) = (f.session().await, f.session().await);
    let (tid, created) = thread_created();
    log.append(&a, events(vec![created])).await.expect("thread");
    let mut appends = Vec::new();
    for i in 0..20 {
        appends.push(log.append(&a, events(vec![msg("a"), msg("x").to(tid.clone())])));
        appends.push(log.append(&tid, events(vec![spend(1)])));
        appends.push(log.append(&b, events(vec![msg(&format!("b{i}"))])));
    }
    for r in futures::future::join_all(appends).await {
        r.expect("append");
    }
    assert_eq!(positions(log, &a).await, one_to(21));
    assert_eq!(positions(log, &tid).await, one_to(40));
    assert_eq!(positions(log, &b).await, one_to(20));
    assert_eq!(f.usage(&a).await.input_tokens, 20);
}

/// `at_tail` appends at the expected tail and refuses a stale one, storing nothing.
pub async fn at_tail_refuses_a_stale_tail(log: &dyn SessionLog, f: &dyn Fixture) {
    let sid = f.session().await;
    let (head, stored) = log
        .append(&sid, at_tail(0, vec![msg("1")]))
        .await
        .expect("at 0");
    assert_eq!((head.last_seq, stored.len(), stored[0].seq), (1, 1, 1));
    let err = log
        .append(&sid, at_tail(0, vec![msg("stale")]))
        .await
        .expect_err("stale");
    assert!(
        matches!(
            err,
            Error::Refused(Refusal::Stale {
                expected: 0,
                actual: 1
            })
        ),
        "{err:?}"
    );
    assert_eq!(positions(log, &sid).await, vec![1]);
    log.append(&sid, at_tail(1, vec![msg("2")]))
        .await
        .expect("at 1");
    assert_eq!(positions(log, &sid).await, vec![1, 2]);
}

/// A guard that refuses leaves the log and its projection as they were.
pub async fn a_refused_guard_stores_nothing(log: &dyn SessionLog, f: &dyn Fixture) {
    let sid = f.session().await;
    log.append(
        &sid,
        events(vec![NewEvent::new(EventBody::SessionStatusTerminated {})]),
    )
    .await
    .expect("terminate");
    let err = log
        .append(&sid, events(vec![msg("late")]))
        .await
        .expect_err("terminated");
    assert!(
        matches!(err, Error::Refused(Refusal::Terminated)),
        "{err:?}"
    );
    let refuse: crate::Guard = Box::new(|_| Err(Refusal::Invalid("no".into())));
    let err = log.append(&sid, refuse).await.expect_err("refused");
    assert!(
        matches!(err, Error::Refused(Refusal::Invalid(_))),
        "{err:?}"
    );
    let head = log.head(&sid).await.expect("head");
    assert_eq!((head.status, head.last_seq), (SessionStatus::Terminated, 1));
    assert_eq!(positions(log, &sid).await, vec![1]);
}

/// A second answer to the same tool call is refused with the whole batch it came in.
pub async fn a_tool_call_is_answered_once(log: &dyn SessionLog, f: &dyn Fixture) {
    let sid = f.session().await;
    log.append(&sid, events(vec![answer("sevt_call")]))
        .await
        .expect("first answer");
    let err = log
        .append(&sid, events(vec![msg("x"), answer("sevt_call")]))
        .await
        .expect_err("second answer");
    assert!(
        matches!(&err, Error::Refused(Refusal::Invalid(m))
            if m == "user.custom_tool_result: that tool call was already answered"),
        "{err:?}"
    );
    assert_eq!(positions(log, &sid).await, vec![1]);
    // Another call is answered as usual, and the log moves on without a gap.
    log.append(&sid, events(vec![answer("sevt_other")]))
        .await
        .expect("other call");
    assert_eq!(positions(log, &sid).await, vec![1, 2]);
}

/// A second confirmation of the same call is refused too; an event id used twice in one log is
/// a caller's bug, reported as a storage failure rather than as an answered call.
pub async fn a_confirmation_is_given_once_and_ids_are_unique(
    log: &dyn SessionLog,
    f: &dyn Fixture,
) {
    let sid = f.session().await;
    let confirm = || {
        NewEvent::new(EventBody::UserToolConfirmation {
            tool_use_id: "sevt_call".into(),
            result: agentd_wire::event::Confirmation::Allow,
            deny_message: None,
            session_thread_id: None,
        })
    };
    log.append(&sid, events(vec![confirm()]))
        .await
        .expect("first confirmation");
    let err = log
        .append(&sid, events(vec![confirm()]))
        .await
        .expect_err("second confirmation");
    assert!(
        matches!(&err, Error::Refused(Refusal::Invalid(m))
            if m == "user.tool_confirmation: that tool call was already answered"),
        "{err:?}"
    );
    let first = msg("one");
    let again = NewEvent {
        id: first.id.clone(),
        ..msg("two")
    };
    log.append(&sid, events(vec![first])).await.expect("first");
    let err = log
        .append(&sid, events(vec![again]))
        .await
        .expect_err("same id");
    assert!(matches!(err, Error::Storage(_)), "{err:?}");
    assert_eq!(positions(log, &sid).await, vec![1, 2]);
}

/// What an append returns is what a read gives back, to the microsecond and with its private
/// data, so a stream fed from `read` shows exactly what the appender saw.
pub async fn appended_events_read_back_exactly(log: &dyn SessionLog, f: &dyn Fixture) {
    let sid = f.session().await;
    let thinking = msg("with private data").with_private(Private::Thinking {
        thinking: "hmm".into(),
        signature: "sig".into(),
    });
    let (_, stored) = log
        .append(&sid, events(vec![msg("plain"), thinking]))
        .await
        .expect("append");
    assert_eq!(log.read(&sid, 0, 10).await.expect("read"), stored);
}

/// One append creates a thread and delivers its first event into the thread's new log.
pub async fn a_thread_is_created_and_given_work_in_one_append(
    log: &dyn SessionLog,
    f: &dyn Fixture,
) {
    let sid = f.session().await;
    let (tid, created) = thread_created();
    let mut child_tail = log.subscribe(&tid);
    let work = NewEvent::new(EventBody::AgentThreadMessageReceived {
        from_session_thread_id: ids::primary_thread(&sid),
        from_agent_name: None,
        content: vec![ContentBlock::text("do the thing")],
    })
    .to(tid.clone());
    let (head, stored) = log
        .append(&sid, events(vec![msg("go"), created, work]))
        .await
        .expect("append");
    assert_eq!((head.last_seq, stored.len()), (2, 2));
    let child = log.read(&tid, 0, 10).await.expect("read thread");
    assert_eq!(child.len(), 1);
    assert_eq!(child[0].seq, 1);
    assert!(matches!(
        child[0].event.body,
        EventBody::AgentThreadMessageReceived { .. }
    ));
    assert_eq!(*child_tail.borrow_and_update(), 1);
    let row = f.thread(&tid).await.expect("the thread's row");
    assert_eq!(row, (sid.clone(), ids::primary_thread(&sid)));
    let thead = log.head(&tid).await.expect("thread head");
    assert_eq!((thead.status, thead.last_seq), (SessionStatus::Idle, 1));
}

/// Tokens a thread spends count in its session, whose log does not move for them.
pub async fn a_threads_tokens_count_in_its_session(log: &dyn SessionLog, f: &dyn Fixture) {
    let sid = f.session().await;
    let (tid, created) = thread_created();
    log.append(&sid, events(vec![created]))
        .await
        .expect("thread");
    log.append(&tid, events(vec![spend(100)]))
        .await
        .expect("thread spends");
    assert_eq!(f.usage(&sid).await.input_tokens, 100);
    assert_eq!(log.head(&sid).await.expect("head").last_seq, 1);
    log.append(&sid, events(vec![spend(5)]))
        .await
        .expect("session spends");
    assert_eq!(f.usage(&sid).await.input_tokens, 105);
    let usage = NewEvent::new(EventBody::SessionUsage {
        usage: Usage::default(),
    });
    let (_, stored) = log.append(&tid, events(vec![usage])).await.expect("usage");
    let EventBody::SessionUsage { usage } = &stored[0].event.body else {
        panic!("not a session.usage: {stored:?}");
    };
    assert_eq!(usage.input_tokens, 100, "a thread's usage is its own");
}

/// A subscriber is told the new tail after an append, and reads it back.
pub async fn subscribe_reports_the_tail(log: &dyn SessionLog, f: &dyn Fixture) {
    let sid = f.session().await;
    let mut tail = log.subscribe(&sid);
    log.append(&sid, events(vec![msg("1"), msg("2")]))
        .await
        .expect("append");
    tokio::time::timeout(Duration::from_secs(5), tail.wait_for(|t| *t == 2))
        .await
        .expect("told in time")
        .expect("channel open");
    let after = log.read(&sid, 0, 10).await.expect("read");
    assert_eq!(after.len(), 2);
    log.append(&sid, events(vec![msg("3")]))
        .await
        .expect("append");
    tokio::time::timeout(Duration::from_secs(5), tail.wait_for(|t| *t == 3))
        .await
        .expect("told in time")
        .expect("channel open");
}

/// Runs every check, each on a fresh fixture made by `fresh`.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::conformance_tests!(@each $fresh;
            positions_are_gapless_under_concurrent_appends,
            positions_are_gapless_across_logs,
            at_tail_refuses_a_stale_tail,
            a_refused_guard_stores_nothing,
            a_tool_call_is_answered_once,
            a_confirmation_is_given_once_and_ids_are_unique,
            appended_events_read_back_exactly,
            a_thread_is_created_and_given_work_in_one_append,
            a_threads_tokens_count_in_its_session,
            subscribe_reports_the_tail
        );
    };
    (@each $fresh:path; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some((log, fixture)) = $fresh().await else { return };
                $crate::conformance::$check(&log, &fixture).await;
            }
        )*
    };
}
