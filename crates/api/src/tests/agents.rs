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
        .invalid("tools[1].name: \"has space\" must be 1-128 characters");
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

/// A create body with `extra` merged in.
fn agent_with(extra: Value) -> Value {
    let mut body = json!({"name": "a", "model": "scripted/echo"});
    for (k, v) in extra.as_object().expect("an object") {
        body[k] = v.clone();
    }
    body
}

fn toolset(extra: Value) -> Value {
    let mut t = json!({"type": "agent_toolset_20260401"});
    for (k, v) in extra.as_object().expect("an object") {
        t[k] = v.clone();
    }
    t
}

#[tokio::test]
async fn what_this_agentd_cannot_act_on_is_refused_not_stored() {
    let api = TestApi::new().await;
    for (extra, msg) in [
        (
            json!({"skills": [{"type": "anthropic", "skill_id": "xlsx"}]}),
            "skills: skills are not supported by this agentd yet",
        ),
        (
            json!({"tools": [toolset(json!({"configs": [{"name": "web_fetch", "allowed_domains": ["a.com"]}]}))]}),
            "tools[0].configs[0].allowed_domains: not supported by this agentd yet",
        ),
        (
            json!({"execution_identity": {"type": "aws_role", "role_arn": "arn:aws:iam::1:role/r"}}),
            "execution_identity: aws_role is not supported",
        ),
    ] {
        api.post("/v1/agents", agent_with(extra)).await.invalid(msg);
    }
    api.post(
        "/v1/agents",
        agent_with(json!({"execution_identity": {"type": "root"}})),
    )
    .await
    .invalid(
        "execution_identity.type: unknown variant `root`, expected `service_account` or `aws_role`",
    );
    // An empty list says nothing this agentd cannot honour.
    let a = api
        .post(
            "/v1/agents",
            agent_with(json!({"skills": [], "mcp_servers": [], "execution_identity": {"type": "service_account"}})),
        )
        .await
        .ok();
    assert_eq!(a["execution_identity"], json!({"type": "service_account"}));
    // Nor may an update bring them in.
    let id = a["id"].as_str().expect("id");
    api.post(
        &format!("/v1/agents/{id}"),
        json!({"skills": [{"type": "custom", "skill_id": "skill_1"}]}),
    )
    .await
    .invalid("skills: skills are not supported");
}

#[tokio::test]
async fn mcp_servers_and_toolsets_are_stored_with_their_defaults_resolved() {
    let api = TestApi::new().await;
    let docs = json!({"type": "url", "name": "docs", "url": "https://mcp.example.com/mcp"});
    let a = api
        .post(
            "/v1/agents",
            agent_with(json!({
                "mcp_servers": [docs],
                "tools": [{"type": "mcp_toolset", "mcp_server_name": "docs",
                           "default_config": {"permission_policy": {"type": "always_ask"}},
                           "configs": [{"name": "search", "enabled": false},
                                       {"name": "read", "permission_policy": null}]}],
            })),
        )
        .await
        .ok();
    assert_eq!(a["mcp_servers"], json!([docs]));
    assert_eq!(
        a["tools"],
        json!([{"type": "mcp_toolset", "mcp_server_name": "docs",
                "default_config": {"enabled": true, "permission_policy": {"type": "always_ask"}},
                "configs": [
                    {"name": "search", "enabled": false, "permission_policy": {"type": "always_ask"}},
                    {"name": "read", "enabled": true, "permission_policy": {"type": "always_ask"}}]}])
    );
    let id = a["id"].as_str().expect("id");
    let got = api.get(&format!("/v1/agents/{id}")).await.ok();
    assert_eq!(got["tools"], a["tools"]);
}

#[tokio::test]
async fn mcp_servers_and_toolsets_are_validated_field_by_field() {
    let api = TestApi::new().await;
    let server = |name: &str, url: &str| json!({"type": "url", "name": name, "url": url});
    let docs = server("docs", "https://mcp.example.com/mcp");
    let set = |name: &str| json!({"type": "mcp_toolset", "mcp_server_name": name});
    for (extra, msg) in [
        (
            json!({"mcp_servers": [docs], "tools": [set("other")]}),
            "tools[0].mcp_server_name: \"other\" names no server in mcp_servers",
        ),
        (
            json!({"tools": [set("docs")]}),
            "tools[0].mcp_server_name: \"docs\" names no server in mcp_servers",
        ),
        (
            json!({"mcp_servers": [docs, docs]}),
            "mcp_servers[1].name: \"docs\" is declared twice",
        ),
        (
            json!({"mcp_servers": [server("", "https://a.example")]}),
            "mcp_servers[0].name: must be 1-255 characters",
        ),
        (
            json!({"mcp_servers": [server("f", "ftp://a.example/mcp")]}),
            "mcp_servers[0].url: \"ftp://a.example/mcp\" must be an http or https URL",
        ),
        (
            json!({"mcp_servers": [server("f", "not a url")]}),
            "mcp_servers[0].url: \"not a url\" is not a URL",
        ),
        (
            json!({"mcp_servers": [server("f", "https://u:p@a.example/mcp")]}),
            "mcp_servers[0].url: must not carry credentials",
        ),
        (
            json!({"mcp_servers": [docs], "tools": [set("docs"), set("docs")]}),
            "tools[1].mcp_server_name: the server \"docs\" has two mcp_toolset entries",
        ),
        (
            json!({"mcp_servers": [docs], "tools": [{"type": "mcp_toolset", "mcp_server_name": "docs",
                    "configs": [{"name": "a"}, {"name": "a"}]}]}),
            "tools[0].configs[1].name: \"a\" is configured twice",
        ),
        (
            json!({"mcp_servers": [docs], "tools": [{"type": "mcp_toolset", "mcp_server_name": "docs",
                    "configs": [{"name": "a", "allowed_domains": []}]}]}),
            "tools[0].configs[0].allowed_domains: not a field of an MCP tool config",
        ),
    ] {
        api.post("/v1/agents", agent_with(extra)).await.invalid(msg);
    }
}

#[tokio::test]
async fn a_toolset_config_must_name_a_tool_of_the_toolset_once() {
    let api = TestApi::new().await;
    let with_configs = |configs: Value| {
        api.post(
            "/v1/agents",
            agent_with(json!({"tools": [toolset(json!({"configs": configs}))]})),
        )
    };
    let msg = with_configs(json!([{"name": "bash"}, {"name": "shell"}]))
        .await
        .invalid("tools[0].configs[1].name: \"shell\" is not a tool of agent_toolset_20260401");
    assert!(
        msg.contains("bash, edit, read, write, glob, grep, web_fetch, web_search"),
        "{msg}"
    );
    with_configs(json!([{"name": "bash"}, {"name": "bash", "enabled": false}]))
        .await
        .invalid("tools[0].configs[1].name: \"bash\" is configured twice");
    with_configs(json!([{"name": "bash", "type": "read"}]))
        .await
        .invalid("tools[0].configs[0].type: must equal the name \"bash\"");
    with_configs(json!([{"name": "bash", "type": "bash"}]))
        .await
        .ok();
    api.post(
        "/v1/agents",
        agent_with(json!({"tools": [toolset(json!({})), toolset(json!({}))]})),
    )
    .await
    .invalid("tools[1]: agent_toolset_20260401 is listed twice");
}

#[tokio::test]
async fn null_is_accepted_where_the_sdk_allows_it() {
    let api = TestApi::new().await;
    let a = api
        .post(
            "/v1/agents",
            agent_with(json!({
                "description": null, "system": null, "multiagent": null, "execution_identity": null,
                "tools": [toolset(json!({
                    "default_config": {"enabled": null, "permission_policy": {"type": "always_ask"}},
                    "configs": [{"name": "read", "enabled": null, "permission_policy": null}],
                }))],
            })),
        )
        .await
        .ok();
    // What is stored and shown is what each tool gets.
    let t = &a["tools"][0];
    assert_eq!(t["default_config"]["enabled"], true);
    assert_eq!(t["configs"][0]["enabled"], true);
    assert_eq!(t["configs"][0]["permission_policy"]["type"], "always_ask");
    assert_eq!(a["execution_identity"], json!({"type": "service_account"}));
    let id = a["id"].as_str().expect("id");
    api.post(
        "/v1/agents",
        agent_with(json!({"tools": [toolset(json!({"default_config": null}))]})),
    )
    .await
    .ok();
    // `null` clears a list on update, as the SDK documents.
    let u = api
        .post(
            &format!("/v1/agents/{id}"),
            json!({"tools": null, "mcp_servers": null, "skills": null}),
        )
        .await
        .ok();
    assert_eq!(u["tools"], json!([]));
    assert_eq!(u["version"], 2);
}

#[tokio::test]
async fn the_sdk_limits_are_enforced_and_named() {
    let api = TestApi::new().await;
    let many: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    api.post("/v1/agents", agent_with(json!({"metadata": many})))
        .await
        .invalid("metadata: 17 pairs is over the limit of 16");
    api.post(
        "/v1/agents",
        agent_with(json!({"metadata": {"k".repeat(65): "v"}})),
    )
    .await
    .invalid("must be 1 to 64 characters, not 65");
    api.post(
        "/v1/agents",
        agent_with(json!({"metadata": {"k": "v".repeat(513)}})),
    )
    .await
    .invalid("metadata.k: the value is 513 characters, over the limit of 512");
    let tools: Vec<Value> = (0..249).map(|i| custom_tool(&format!("t{i}"))).collect();
    let mut with_toolset = tools.clone();
    with_toolset.push(toolset(json!({})));
    api.post("/v1/agents", agent_with(json!({"tools": with_toolset})))
        .await
        .invalid("tools: 257 tools across all toolsets is over the limit of 256");
    api.post("/v1/agents", agent_with(json!({"tools": tools})))
        .await
        .ok();
    api.post(
        "/v1/agents",
        agent_with(json!({"tools": [custom_tool(&"n".repeat(129))]})),
    )
    .await
    .invalid("must be 1-128 characters");
    // An update is held to the limits of the agent it makes.
    let id = api.agent("scripted/echo").await;
    let half: serde_json::Map<String, Value> =
        (0..9).map(|i| (format!("a{i}"), json!("v"))).collect();
    api.post(&format!("/v1/agents/{id}"), json!({"metadata": half}))
        .await
        .ok();
    let other: serde_json::Map<String, Value> =
        (0..8).map(|i| (format!("b{i}"), json!("v"))).collect();
    api.post(&format!("/v1/agents/{id}"), json!({"metadata": other}))
        .await
        .invalid("metadata: 17 pairs is over the limit of 16");
}
