//! `POST /v1/sessions/{id}/events`: what a client may send, and where it goes.

use axum::http::Method;
use serde_json::{Map, Value, json};

use agentd_session::{NewEvent, events};
use agentd_wire::EventBody;
use agentd_wire::event::Permission;

use super::TestApi;

fn message(text: &str) -> Value {
    json!({"type": "user.message", "content": [{"type": "text", "text": text}]})
}

fn outcome(description: &str, max_iterations: Value) -> Value {
    json!({
        "type": "user.define_outcome",
        "description": description,
        "rubric": {"type": "text", "content": "it works"},
        "max_iterations": max_iterations,
    })
}

/// The types of every event in session `sid`'s log, oldest first.
async fn logged(api: &TestApi, sid: &str) -> Vec<String> {
    let page = api
        .get(&format!("/v1/sessions/{sid}/events?limit=1000"))
        .await
        .ok();
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_owned())
        .collect()
}

/// Append an agent's call to the log directly, as the harness would; its event id.
async fn agent_call(api: &TestApi, sid: &str, body: EventBody) -> String {
    let (_, stored) = api
        .store
        .append(sid, events(vec![NewEvent::new(body)]))
        .await
        .expect("append");
    stored[0].event.id.clone()
}

#[tokio::test]
async fn a_message_to_an_idle_session_is_stored_and_starts_it() {
    let api = TestApi::new().await;
    // A slow script holds the session in `running` while the test looks.
    api.script("slow", "turns: [{text: done, delay_ms: 60000}]");
    let sid = api.session_on("scripted/slow").await;
    let sent = api.send(&sid, json!([message("hello")])).await.ok();
    let data = sent["data"].as_array().expect("data");
    assert_eq!(data.len(), 1, "only the events sent come back: {sent}");
    let e = &data[0];
    assert_eq!(e["type"], "user.message");
    assert_eq!(e["content"], json!([{"type": "text", "text": "hello"}]));
    assert!(
        e["id"].as_str().is_some_and(|id| id.starts_with("sevt_")),
        "{e}"
    );
    let at = e["processed_at"].as_str().expect("processed_at");
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    let s = api.get(&format!("/v1/sessions/{sid}")).await.ok();
    assert_eq!(s["status"], "running");
    // The harness may already have begun its (slow) turn: only the start is fixed.
    let logged = logged(&api, &sid).await;
    assert_eq!(
        logged[..2],
        ["user.message", "session.status_running"],
        "{logged:?}"
    );
    // The listed event is the one returned.
    let listed = api.get(&format!("/v1/sessions/{sid}/events")).await.ok();
    for field in ["id", "type", "content"] {
        assert_eq!(listed["data"][0][field], e[field], "{field}");
    }
}

#[tokio::test]
async fn a_sent_event_reads_back_exactly_as_returned() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    let sent = api
        .send(&sid, json!([{"type": "user.interrupt"}]))
        .await
        .ok();
    let listed = api.get(&format!("/v1/sessions/{sid}/events")).await.ok();
    assert_eq!(listed["data"][0], sent["data"][0]);
}

#[tokio::test]
async fn a_batch_comes_back_in_order_with_distinct_ids() {
    let api = TestApi::new().await;
    api.script("slow", "turns: [{text: done, delay_ms: 60000}]");
    let sid = api.session_on("scripted/slow").await;
    let sent = api
        .send(&sid, json!([message("one"), message("two")]))
        .await
        .ok();
    let data = sent["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["content"][0]["text"], "one");
    assert_eq!(data[1]["content"][0]["text"], "two");
    assert_ne!(data[0]["id"], data[1]["id"]);
    // One status change for the whole batch (the harness's turn may follow).
    let logged = logged(&api, &sid).await;
    assert_eq!(
        logged[..3],
        ["user.message", "user.message", "session.status_running"],
        "{logged:?}"
    );
}

#[tokio::test]
async fn an_interrupt_alone_does_not_start_an_idle_session() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    let sent = api
        .send(&sid, json!([{"type": "user.interrupt"}]))
        .await
        .ok();
    assert_eq!(sent["data"][0]["type"], "user.interrupt");
    let s = api.get(&format!("/v1/sessions/{sid}")).await.ok();
    assert_eq!(s["status"], "idle");
    assert_eq!(logged(&api, &sid).await, ["user.interrupt"]);
}

#[tokio::test]
async fn the_events_list_must_hold_events() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    let path = format!("/v1/sessions/{sid}/events");
    api.send(&sid, json!([]))
        .await
        .invalid("events: send at least one event");
    api.post(&path, json!({}))
        .await
        .invalid("missing field `events`");
    api.post(&path, json!({"events": [], "extra": 1}))
        .await
        .invalid("unknown field `extra`");
    api.post(&path, json!({"events": {"type": "user.message"}}))
        .await
        .invalid("events: invalid type: map, expected a sequence");
    api.send(&sid, json!(["hello"]))
        .await
        .invalid("events[0]: expected an event object");
}

#[tokio::test]
async fn an_unknown_event_type_lists_the_types_a_client_may_send() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    let all = "user.message, user.interrupt, user.custom_tool_result, user.tool_confirmation, user.tool_result, user.define_outcome";
    let msg = api
        .send(
            &sid,
            json!([message("ok"), {"type": "agent.message", "content": []}]),
        )
        .await
        .invalid("events[1].type: \"agent.message\" is not an event a client can send");
    assert!(msg.ends_with(&format!("expected one of {all}")), "{msg}");
    api.send(&sid, json!([{"content": []}]))
        .await
        .invalid(&format!("events[0].type: missing; expected one of {all}"));
    api.send(&sid, json!([{"type": 3}]))
        .await
        .invalid("events[0].type: missing");
}

#[tokio::test]
async fn errors_inside_an_event_name_the_full_path() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    api.send(&sid, json!([{"type": "user.message", "content": []}]))
        .await
        .invalid("events[0].content: a user.message needs at least one content block");
    api.send(&sid, json!([{"type": "user.message"}]))
        .await
        .invalid("events[0]: missing field `content`");
    api.send(
        &sid,
        json!([message("ok"), {"type": "user.message", "content": [{"type": "text", "text": 5}]}]),
    )
    .await
    .invalid("events[1].content[0]");
    api.send(
        &sid,
        json!([{"type": "user.message", "content": [{"type": "text", "text": "x"}], "colour": 1}]),
    )
    .await
    .invalid("unknown field `colour`");
    api.send(
        &sid,
        json!([{"type": "user.tool_confirmation", "tool_use_id": "sevt_1", "result": "maybe"}]),
    )
    .await
    .invalid("events[0].result: unknown variant `maybe`");
}

#[tokio::test]
async fn a_bad_event_rejects_the_whole_batch() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    api.send(
        &sid,
        json!([message("first"), {"type": "user.message", "content": []}]),
    )
    .await
    .invalid("events[1].content");
    assert!(logged(&api, &sid).await.is_empty());
    let s = api.get(&format!("/v1/sessions/{sid}")).await.ok();
    assert_eq!(s["status"], "idle");
}

#[tokio::test]
async fn a_custom_tool_result_must_answer_a_custom_tool_call_of_the_session() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    let result = |id: &str| json!([{"type": "user.custom_tool_result", "custom_tool_use_id": id}]);
    api.send(&sid, result("sevt_nope"))
        .await
        .invalid("events[0].custom_tool_use_id: \"sevt_nope\" is not the id of an agent.custom_tool_use event in this session");
    // An event of the session that is not a custom tool call.
    let sent = api
        .send(&sid, json!([{"type": "user.interrupt"}]))
        .await
        .ok();
    let interrupt = sent["data"][0]["id"].as_str().expect("id").to_owned();
    api.send(&sid, result(&interrupt)).await.invalid(&format!(
        "events[0].custom_tool_use_id: {interrupt:?} is not the id of an agent.custom_tool_use"
    ));
    // A custom tool call of another session.
    let other = api.session().await;
    let call = agent_call(
        &api,
        &other,
        EventBody::AgentCustomToolUse {
            name: "lookup".into(),
            input: Map::new(),
            session_thread_id: None,
        },
    )
    .await;
    api.send(&sid, result(&call))
        .await
        .invalid("events[0].custom_tool_use_id");
    // Its own session takes it.
    let ok = api.send(&other, result(&call)).await.ok();
    assert_eq!(ok["data"][0]["type"], "user.custom_tool_result");
    assert_eq!(ok["data"][0]["custom_tool_use_id"], call.as_str());
}

#[tokio::test]
async fn a_tool_confirmation_must_answer_a_call_that_asked() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    let confirm = |id: &str| json!([{"type": "user.tool_confirmation", "tool_use_id": id, "result": "allow"}]);
    api.send(&sid, confirm("sevt_nope"))
        .await
        .invalid("events[0].tool_use_id: \"sevt_nope\" is not the id of an agent.tool_use event in this session");
    let tool_use = |permission| EventBody::AgentToolUse {
        name: "bash".into(),
        input: Map::new(),
        evaluated_permission: Some(permission),
        session_thread_id: None,
    };
    let allowed = agent_call(&api, &sid, tool_use(Permission::Allow)).await;
    api.send(&sid, confirm(&allowed)).await.invalid(&format!(
        "events[0].tool_use_id: {allowed:?} does not wait for a confirmation"
    ));
    let asked = agent_call(&api, &sid, tool_use(Permission::Ask)).await;
    let ok = api.send(&sid, confirm(&asked)).await.ok();
    assert_eq!(ok["data"][0]["type"], "user.tool_confirmation");
    assert_eq!(ok["data"][0]["result"], "allow");
}

#[tokio::test]
async fn an_outcome_needs_a_description_and_a_sane_iteration_count() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    api.send(&sid, json!([outcome("  ", Value::Null)]))
        .await
        .invalid("events[0].description: must not be empty");
    api.send(&sid, json!([outcome("ship it", json!(0))]))
        .await
        .invalid("events[0].max_iterations: 0 is not between 1 and 20");
    api.send(&sid, json!([message("hi"), outcome("ship it", json!(21))]))
        .await
        .invalid("events[1].max_iterations: 21 is not between 1 and 20");
    api.send(&sid, json!([outcome("ship it", json!(-1))]))
        .await
        .invalid("events[0].max_iterations: invalid value: integer `-1`");
    let no_rubric = json!([{"type": "user.define_outcome", "description": "ship it"}]);
    api.send(&sid, no_rubric)
        .await
        .invalid("events[0]: missing field `rubric`");
    let file_rubric = json!([{
        "type": "user.define_outcome",
        "description": "ship it",
        "rubric": {"type": "file", "file_id": "file_missing"},
    }]);
    api.send(&sid, file_rubric)
        .await
        .invalid("events[0].rubric.file_id: file file_missing not found");
    assert!(logged(&api, &sid).await.is_empty());
}

#[tokio::test]
async fn an_archived_session_takes_no_events() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    let s = api
        .post(&format!("/v1/sessions/{sid}/archive"), json!({}))
        .await
        .ok();
    assert!(s["archived_at"].is_string(), "{s}");
    api.send(&sid, json!([message("hi")])).await.err(
        409,
        "conflict_error",
        &format!("session {sid} is archived and accepts no more events"),
    );
    assert!(logged(&api, &sid).await.is_empty());
}

#[tokio::test]
async fn events_to_a_missing_or_foreign_session_are_404() {
    let api = TestApi::new().await;
    api.send("sesn_missing", json!([message("hi")])).await.err(
        404,
        "not_found_error",
        "session sesn_missing not found",
    );
    let sid = api.session().await;
    let other = api.key_of("other").await;
    let body = json!({"events": [message("hi")]}).to_string().into_bytes();
    let path = format!("/v1/sessions/{sid}/events");
    api.call(Method::POST, &path, Some(&other), Some(body))
        .await
        .err(404, "not_found_error", &format!("session {sid} not found"));
    api.call(Method::GET, &path, Some(&other), None).await.err(
        404,
        "not_found_error",
        &format!("session {sid} not found"),
    );
    assert!(logged(&api, &sid).await.is_empty());
}

#[tokio::test]
async fn an_unknown_thread_is_400_naming_the_field() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    api.send(
        &sid,
        json!([message("hi"), {"type": "user.interrupt", "session_thread_id": "sthr_nope"}]),
    )
    .await
    .invalid(&format!(
        "events[1].session_thread_id: thread sthr_nope not found in session {sid}"
    ));
    api.send(
        &sid,
        json!([{"type": "user.custom_tool_result", "custom_tool_use_id": "sevt_1", "session_thread_id": "sthr_nope"}]),
    )
    .await
    .invalid("events[0].session_thread_id: thread sthr_nope not found");
    // The primary thread is the session itself.
    let primary = agentd_wire::ids::primary_thread(&sid);
    let sent = api
        .send(
            &sid,
            json!([{"type": "user.interrupt", "session_thread_id": primary}]),
        )
        .await
        .ok();
    assert_eq!(sent["data"][0]["type"], "user.interrupt");
    assert_eq!(logged(&api, &sid).await, ["user.interrupt"]);
}
