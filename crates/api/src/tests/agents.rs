//! `/v1/agents`: what a definition must hold before it is stored.

use serde_json::{Value, json};

use super::TestApi;

fn custom_tool(name: &str) -> Value {
    json!({
        "type": "custom",
        "name": name,
        "description": "a tool",
        "input_schema": {"type": "object"},
    })
}

#[tokio::test]
async fn a_valid_agent_is_created_at_version_1_and_retrievable() {
    let api = TestApi::new().await;
    let a = api
        .post(
            "/v1/agents",
            json!({"name": "helper", "model": "scripted/echo", "tools": [custom_tool("get_weather")]}),
        )
        .await
        .ok();
    assert_eq!(a["type"], "agent");
    assert_eq!(a["version"], 1);
    assert_eq!(a["model"]["id"], "scripted/echo");
    let id = a["id"].as_str().expect("id");
    let got = api.get(&format!("/v1/agents/{id}")).await.ok();
    assert_eq!(got, a);
}

#[tokio::test]
async fn a_model_no_provider_serves_is_refused() {
    let api = TestApi::new().await;
    let create = |model: &str| api.post("/v1/agents", json!({"name": "a", "model": model}));
    let msg = create("gpt-4o")
        .await
        .invalid("model: unknown model \"gpt-4o\"");
    assert!(
        msg.contains("scripted/echo"),
        "names what would work: {msg}"
    );
    create("nosuch/model")
        .await
        .invalid("model: unknown provider \"nosuch\" in model \"nosuch/model\"");
    create("claude-sonnet-4-5")
        .await
        .invalid("model: claude-* models need an Anthropic API key");
    // A script that is not there.
    create("scripted/absent")
        .await
        .invalid("model: model \"scripted/absent\": ");
    create("scripted/../etc")
        .await
        .invalid("model: invalid script name \"../etc\"");
    // The object form is checked the same way.
    api.post(
        "/v1/agents",
        json!({"name": "a", "model": {"id": "gpt-4o"}}),
    )
    .await
    .invalid("model: unknown model \"gpt-4o\"");
}

#[tokio::test]
async fn required_fields_are_named_when_missing() {
    let api = TestApi::new().await;
    api.post("/v1/agents", json!({"name": "a"}))
        .await
        .invalid("missing field `model`");
    api.post("/v1/agents", json!({"model": "scripted/echo"}))
        .await
        .invalid("missing field `name`");
    api.post(
        "/v1/agents",
        json!({"name": "  ", "model": "scripted/echo"}),
    )
    .await
    .invalid("name: must not be empty");
}

#[tokio::test]
async fn custom_tool_names_must_be_usable_and_distinct() {
    let api = TestApi::new().await;
    let with_tools = |tools: Value| {
        api.post(
            "/v1/agents",
            json!({"name": "a", "model": "scripted/echo", "tools": tools}),
        )
    };
    with_tools(json!([custom_tool("ok"), custom_tool("has space")]))
        .await
        .invalid("tools[1].name: \"has space\" must be 1-64 characters");
    with_tools(json!([custom_tool("dup"), custom_tool("dup")]))
        .await
        .invalid("tools[1].name: \"dup\" is declared twice");
    with_tools(json!([{"type": "custom", "name": "x", "input_schema": {"type": "object"}}]))
        .await
        .invalid("missing field `description`");
}

#[tokio::test]
async fn a_roster_must_list_existing_agents_once() {
    let api = TestApi::new().await;
    let with_roster = |agents: Value| {
        api.post(
            "/v1/agents",
            json!({
                "name": "lead",
                "model": "scripted/echo",
                "multiagent": {"type": "coordinator", "agents": agents},
            }),
        )
    };
    with_roster(json!([]))
        .await
        .invalid("multiagent.agents: must list 1 to 20 agents, not 0");
    with_roster(json!(["agent_missing"]))
        .await
        .invalid("multiagent.agents[0]: agent agent_missing not found");
    let worker = api.agent("scripted/echo").await;
    with_roster(json!([worker, {"type": "agent", "id": worker}]))
        .await
        .invalid(&format!("multiagent.agents[1]: {worker} is listed twice"));
    let lead = with_roster(json!([worker])).await.ok();
    assert_eq!(lead["multiagent"]["agents"][0]["id"], worker.as_str());
    assert_eq!(lead["multiagent"]["agents"][0]["version"], 1);
}

#[tokio::test]
async fn unknown_agents_are_404_and_updates_check_the_version() {
    let api = TestApi::new().await;
    api.get("/v1/agents/agent_missing").await.err(
        404,
        "not_found_error",
        "agent agent_missing not found",
    );
    let id = api.agent("scripted/echo").await;
    api.get(&format!("/v1/agents/{id}?version=2")).await.err(
        404,
        "not_found_error",
        "has no version 2",
    );
    api.get(&format!("/v1/agents/{id}?version=two"))
        .await
        .invalid("version: \"two\" is not a positive integer");
    // The update's model is validated like a create's.
    api.post(
        &format!("/v1/agents/{id}"),
        json!({"version": 1, "model": "gpt-4o"}),
    )
    .await
    .invalid("model: unknown model \"gpt-4o\"");
    api.post(
        &format!("/v1/agents/{id}"),
        json!({"version": 7, "name": "renamed"}),
    )
    .await
    .err(409, "conflict_error", "is at version 1, not 7");
}
