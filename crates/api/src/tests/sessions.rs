//! `/v1/sessions`: create (with `initial_events`), retrieve, archive, workspaces.

use axum::http::Method;
use serde_json::{Value, json};

use super::TestApi;

/// A create body for a new agent and environment, with `extra` merged in.
async fn create_body(api: &TestApi, extra: Value) -> Value {
    let mut body = json!({
        "agent": api.agent("scripted/echo").await,
        "environment_id": api.environment().await,
    });
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn create_names_what_is_missing_or_unknown() {
    let api = TestApi::new().await;
    let env = api.environment().await;
    let agent = api.agent("scripted/echo").await;
    api.post("/v1/sessions", json!({"environment_id": env}))
        .await
        .invalid("agent: missing; expected an agent id or an object");
    api.post("/v1/sessions", json!({"agent": agent}))
        .await
        .invalid("missing field `environment_id`");
    api.post(
        "/v1/sessions",
        json!({"agent": agent, "environment_id": env, "colour": "blue"}),
    )
    .await
    .invalid("unknown field `colour`");
    api.post(
        "/v1/sessions",
        json!({"agent": "agent_missing", "environment_id": env}),
    )
    .await
    .err(
        404,
        "not_found_error",
        "agent: agent agent_missing not found",
    );
    api.post(
        "/v1/sessions",
        json!({"agent": {"type": "agent", "id": agent, "version": 3}, "environment_id": env}),
    )
    .await
    .err(404, "not_found_error", "has no version 3");
    api.post(
        "/v1/sessions",
        json!({"agent": agent, "environment_id": "env_missing"}),
    )
    .await
    .err(404, "not_found_error", "environment env_missing not found");
}

#[tokio::test]
async fn create_refuses_what_this_agentd_does_not_support() {
    let api = TestApi::new().await;
    for (extra, msg) in [
        (
            json!({"resources": [{"type": "memory_store", "memory_store_id": "m"}]}),
            "resources[0].type: memory_store resources are not supported",
        ),
        (
            json!({"budget": {"max_usd": 1}}),
            "budget: spending limits are not supported",
        ),
    ] {
        let body = create_body(&api, extra).await;
        api.post("/v1/sessions", body).await.invalid(msg);
    }
    let body = create_body(&api, json!({"vault_ids": ["vlt_1"]})).await;
    api.post("/v1/sessions", body).await.err(
        404,
        "not_found_error",
        "vault_ids[0]: vault vlt_1 not found",
    );
}

#[tokio::test]
async fn an_archived_agent_starts_no_session() {
    let api = TestApi::new().await;
    let agent = api.agent("scripted/echo").await;
    api.post(&format!("/v1/agents/{agent}/archive"), json!({}))
        .await
        .ok();
    let body = json!({"agent": agent, "environment_id": api.environment().await});
    api.post("/v1/sessions", body)
        .await
        .invalid("is archived; sessions cannot start with it");
}

#[tokio::test]
async fn initial_events_are_validated_like_sent_events() {
    let api = TestApi::new().await;
    let cases = [
        (
            json!("hello"),
            "initial_events: expected an array of events",
        ),
        (json!([42]), "initial_events[0]: expected an event object"),
        (
            json!([{"content": []}]),
            "initial_events[0].type: missing; expected one of user.message",
        ),
        (
            json!([{"type": "agent.message", "content": []}]),
            "initial_events[0].type: \"agent.message\" is not an event a client can send",
        ),
        (
            json!([{"type": "user.message", "content": [{"type": "text", "text": "hi"}]},
                   {"type": "user.message", "content": []}]),
            "initial_events[1].content: a user.message needs at least one content block",
        ),
        (
            json!([{"type": "user.custom_tool_result", "custom_tool_use_id": "sevt_1"}]),
            "initial_events[0].custom_tool_use_id: a new session has no agent.custom_tool_use to answer",
        ),
        (
            json!([{"type": "user.tool_confirmation", "tool_use_id": "sevt_1", "result": "allow"}]),
            "initial_events[0].tool_use_id: a new session has no agent.tool_use to answer",
        ),
        (
            json!([{"type": "user.define_outcome", "description": "", "rubric": {"type": "text", "content": "x"}}]),
            "initial_events[0].description: must not be empty",
        ),
        (
            json!([{"type": "user.message", "content": [{"type": "text"}]}]),
            "initial_events[0].content[0]",
        ),
    ];
    for (events, msg) in cases {
        let body = create_body(&api, json!({"initial_events": events})).await;
        api.post("/v1/sessions", body).await.invalid(msg);
    }
    // None of them made a session.
    let list = api.get("/v1/sessions").await.ok();
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn initial_events_are_logged_and_start_the_session() {
    let api = TestApi::new().await;
    // A slow script holds the session in `running` while the test looks.
    api.script("slow", "turns: [{text: done, delay_ms: 60000}]");
    let body = json!({
        "agent": api.agent("scripted/slow").await,
        "environment_id": api.environment().await,
        "initial_events": [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}],
    });
    let s = api.post("/v1/sessions", body).await.ok();
    assert_eq!(s["status"], "running");
    let sid = s["id"].as_str().expect("id");
    let events = api.get(&format!("/v1/sessions/{sid}/events")).await.ok();
    let types: Vec<&str> = events["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types, ["user.message", "session.status_running"]);
}

#[tokio::test]
async fn sessions_of_another_workspace_are_not_found() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    let other = api.key_of("other").await;
    let path = format!("/v1/sessions/{sid}");
    api.call(Method::GET, &path, Some(&other), None).await.err(
        404,
        "not_found_error",
        &format!("session {sid} not found"),
    );
    api.call(Method::DELETE, &path, Some(&other), None)
        .await
        .err(404, "not_found_error", "not found");
    let list = api
        .call(Method::GET, "/v1/sessions", Some(&other), None)
        .await
        .ok();
    assert_eq!(list["data"], json!([]));
    // Still there for its owner.
    assert_eq!(api.get(&path).await.ok()["id"], sid.as_str());
}

#[tokio::test]
async fn missing_sessions_are_404_on_every_route() {
    let api = TestApi::new().await;
    let msg = "session sesn_missing not found";
    api.get("/v1/sessions/sesn_missing")
        .await
        .err(404, "not_found_error", msg);
    api.post("/v1/sessions/sesn_missing", json!({"title": "t"}))
        .await
        .err(404, "not_found_error", msg);
    api.post("/v1/sessions/sesn_missing/archive", json!({}))
        .await
        .err(404, "not_found_error", msg);
    api.delete("/v1/sessions/sesn_missing")
        .await
        .err(404, "not_found_error", msg);
    api.get("/v1/sessions/sesn_missing/events")
        .await
        .err(404, "not_found_error", msg);
    api.get("/v1/sessions/sesn_missing/events/stream")
        .await
        .err(404, "not_found_error", msg);
    api.get("/v1/sessions/sesn_missing/threads")
        .await
        .err(404, "not_found_error", msg);
}

#[tokio::test]
async fn a_deleted_session_is_gone() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    let d = api.delete(&format!("/v1/sessions/{sid}")).await.ok();
    assert_eq!(d, json!({"id": sid, "type": "session_deleted"}));
    api.get(&format!("/v1/sessions/{sid}"))
        .await
        .err(404, "not_found_error", "not found");
}

#[tokio::test]
async fn update_refuses_vaults_and_unknown_fields() {
    let api = TestApi::new().await;
    let sid = api.session().await;
    let path = format!("/v1/sessions/{sid}");
    api.post(&path, json!({"vault_ids": ["vlt_1"]}))
        .await
        .invalid("vault_ids: a session's vaults are set when it is created");
    api.post(&path, json!({"status": "idle"}))
        .await
        .invalid("unknown field `status`");
    let s = api.post(&path, json!({"title": "named"})).await.ok();
    assert_eq!(s["title"], "named");
}

#[tokio::test]
async fn the_agent_parse_names_its_type_and_path() {
    let api = TestApi::new().await;
    let env = api.environment().await;
    let agent = api.agent("scripted/echo").await;
    let create = |a: Value| api.post("/v1/sessions", json!({"agent": a, "environment_id": env}));
    create(json!({"type": "agent_v2", "id": agent}))
        .await
        .invalid("agent.type: \"agent_v2\" is not one of agent, agent_with_overrides");
    create(json!({"id": agent}))
        .await
        .invalid("agent.type: missing; expected one of agent, agent_with_overrides");
    create(json!({"type": "agent", "id": agent, "colour": "blue"}))
        .await
        .invalid("agent.colour: unknown field `colour`, expected `id` or `version`");
    create(json!({"type": "agent", "id": agent, "version": 0}))
        .await
        .invalid("agent.version: must be at least 1");
    create(json!(7))
        .await
        .invalid("agent: 7 is neither an agent id nor an object");
    create(json!({"type": "agent_with_overrides", "id": agent, "tools": [{"type": "custom", "name": "x"}]}))
        .await
        .invalid("agent.tools[0]: missing field `description`");
}

#[tokio::test]
async fn overrides_replace_the_agents_fields_for_the_session_only() {
    let api = TestApi::new().await;
    let env = api.environment().await;
    let a = api
        .post(
            "/v1/agents",
            json!({"name": "a", "model": "scripted/echo", "system": "be terse",
                   "tools": [{"type": "agent_toolset_20260401"}]}),
        )
        .await
        .ok();
    let id = a["id"].as_str().expect("id");
    let s = api
        .post(
            "/v1/sessions",
            json!({"environment_id": env, "agent": {
                "type": "agent_with_overrides", "id": id, "version": 1,
                "system": null, "tools": [],
            }}),
        )
        .await
        .ok();
    assert_eq!(s["agent"]["id"], id);
    assert_eq!(s["agent"]["version"], 1);
    assert_eq!(s["agent"]["system"], Value::Null);
    assert_eq!(s["agent"]["tools"], json!([]));
    assert_eq!(s["agent"]["model"]["id"], "scripted/echo");
    let kept = api.get(&format!("/v1/agents/{id}")).await.ok();
    assert_eq!(kept, a);
    // Overrides are held to what an agent is.
    let create = |o: Value| {
        let mut agent = json!({"type": "agent_with_overrides", "id": id});
        for (k, v) in o.as_object().expect("an object") {
            agent[k] = v.clone();
        }
        api.post(
            "/v1/sessions",
            json!({"environment_id": env, "agent": agent}),
        )
    };
    create(json!({"model": "gpt-4o"}))
        .await
        .invalid("agent.model: unknown model \"gpt-4o\"");
    create(json!({"skills": [{"type": "anthropic", "skill_id": "xlsx"}]}))
        .await
        .invalid("agent.skills: skills are not supported");
    create(json!({"system": "x".repeat(100_001)}))
        .await
        .invalid("agent.system: 100001 characters is over the limit of 100000");
}

#[tokio::test]
async fn create_holds_to_the_sdk_limits() {
    let api = TestApi::new().await;
    let msg = json!({"type": "user.message", "content": [{"type": "text", "text": "hi"}]});
    let body = create_body(&api, json!({"initial_events": vec![msg; 51]})).await;
    api.post("/v1/sessions", body)
        .await
        .invalid("initial_events: 51 entries is over the limit of 50");
    let many: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let body = create_body(&api, json!({"metadata": many})).await;
    api.post("/v1/sessions", body)
        .await
        .invalid("metadata: 17 pairs is over the limit of 16");
    let sid = api.session().await;
    api.post(
        &format!("/v1/sessions/{sid}"),
        json!({"metadata": {"k": "v".repeat(513)}}),
    )
    .await
    .invalid("metadata.k: the value is 513 characters");
}
