"""`claude-*` models go to the (fake) Anthropic Messages API: what agentd sends upstream, and
how models are checked when an agent is created."""

import anthropic
import pytest

import fake_anthropic as fa
from conftest import make_env, send_text, wait_idle

UPSTREAM_KEY = "sk-ant-upstream-e2e"
TOOLS = [
    {"type": "custom", "name": "alpha", "description": "first tool",
     "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
    {"type": "custom", "name": "beta", "description": "second tool",
     "input_schema": {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]}},
]


def test_request_shape_sent_upstream(server_factory, fake_upstream):
    srv = server_factory(upstream=fake_upstream, anthropic_api_key=UPSTREAM_KEY)
    client = srv.client()
    a = client.beta.agents.create(name="shape", model="claude-opus-4-6", system="You are a careful assistant.",
                                  tools=TOOLS)
    s = client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)
    fake_upstream.enqueue(fa.reply_text("first"), fa.reply_text("second"))
    send_text(client, s.id, "question one")
    wait_idle(client, s.id)
    send_text(client, s.id, "question two")
    wait_idle(client, s.id, count=2)

    reqs = fake_upstream.messages_requests()
    assert len(reqs) == 2
    r = reqs[0]
    assert r.method == "POST" and r.path == "/v1/messages"
    assert r.headers["x-api-key"] == UPSTREAM_KEY
    assert r.headers.get("anthropic-version") == "2023-06-01"
    assert r.headers["content-type"].startswith("application/json")
    assert "text/event-stream" in r.headers.get("accept", "")
    body = r.body
    assert body["stream"] is True
    assert body["model"] == "claude-opus-4-6"
    assert isinstance(body["max_tokens"], int) and body["max_tokens"] > 0
    assert body["system"] == [{"type": "text", "text": "You are a careful assistant.",
                               "cache_control": {"type": "ephemeral"}}]
    assert [t["name"] for t in body["tools"]] == ["alpha", "beta"]
    assert body["tools"][1]["input_schema"] == TOOLS[1]["input_schema"]
    assert body["tools"][0]["description"] == "first tool"
    assert "cache_control" not in body["tools"][0]
    assert body["tools"][1]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "question one", "cache_control": {"type": "ephemeral"}}]}]

    # the second turn carries the whole conversation; the breakpoint moves to the newest user block
    m2 = reqs[1].body["messages"]
    assert [m["role"] for m in m2] == ["user", "assistant", "user"]
    assert m2[0]["content"] == [{"type": "text", "text": "question one"}]
    assert m2[1]["content"] == [{"type": "text", "text": "first"}]
    assert m2[2]["content"] == [{"type": "text", "text": "question two", "cache_control": {"type": "ephemeral"}}]


def test_no_system_and_no_tools_are_omitted(client, fake_upstream):
    a = client.beta.agents.create(name="bare", model="claude-haiku-4-5")
    s = client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)
    send_text(client, s.id, "hi")
    wait_idle(client, s.id)
    body = fake_upstream.messages_requests()[0].body
    assert "system" not in body and "tools" not in body
    assert body["model"] == "claude-haiku-4-5"


def test_unknown_model_is_400_naming_model(client):
    for bad in ("gpt-4o", "llama3", "scripted/does-not-exist", "scripted/../etc/passwd"):
        with pytest.raises(anthropic.BadRequestError) as ei:
            client.beta.agents.create(name="x", model=bad)
        assert ei.value.body["error"]["type"] == "invalid_request_error"
        assert ei.value.body["error"]["message"].startswith("model"), ei.value.body
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name="x", model={"id": "mistral-large"})
    assert ei.value.body["error"]["message"].startswith("model")
    assert list(client.beta.agents.list()) == []


def test_claude_models_need_an_upstream_key(server_factory):
    srv = server_factory()  # no AGENTD_ANTHROPIC_API_KEY
    c = srv.client()
    with pytest.raises(anthropic.BadRequestError) as ei:
        c.beta.agents.create(name="x", model="claude-sonnet-4-6")
    assert ei.value.body["error"]["message"].startswith("model")
    assert "AGENTD_ANTHROPIC_API_KEY" in ei.value.message
    # scripted models still work
    assert c.beta.agents.create(name="ok", model="scripted/echo").version == 1
