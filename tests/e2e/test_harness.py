"""The test harness itself: the server handle's kill/restart (used by crash tests) and the fake
upstream's streaming format, checked with the official SDK's own Messages client."""

import anthropic
import pytest

import fake_anthropic as fa
from conftest import make_agent, make_env, send_text, wait_idle


def test_kill_and_restart_keep_data_url_and_key(server, client):
    a = make_agent(client, system="persisted")
    s = client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)
    send_text(client, s.id, "before the crash")
    before = wait_idle(client, s.id)
    url = server.url

    server.kill()
    assert not server.alive
    with pytest.raises(anthropic.APIConnectionError):
        client.beta.agents.list()

    server.restart()
    assert server.alive and server.url == url
    assert client.beta.agents.retrieve(a.id).system == "persisted"
    assert [e.id for e in client.beta.sessions.events.list(s.id)] == [e["id"] for e in before]
    send_text(client, s.id, "after the restart")
    wait_idle(client, s.id, count=2)

    assert server.stop() == 0  # SIGTERM: graceful
    server.restart()
    assert client.beta.sessions.retrieve(s.id).status == "idle"
    assert server.log().count("agentd: listening on") == 3


def test_fake_upstream_speaks_the_messages_stream_format(fake_upstream):
    """The official SDK's Messages client accepts every kind of block the fake streams."""
    fake_upstream.enqueue(fa.message(
        fa.thinking("step by step", signature="sig-1"),
        fa.text("Hello, world", pieces=4),
        fa.tool_use("calc", {"expr": "2+2", "nested": {"k": [1, 2]}}, id="toolu_x", pieces=6),
        input_tokens=12, output_tokens=34, cache_read_input_tokens=5))
    c = anthropic.Anthropic(base_url=fake_upstream.base_url, api_key="k", max_retries=0, timeout=10)
    with c.messages.stream(model="claude-sonnet-4-6", max_tokens=100,
                           messages=[{"role": "user", "content": "hi"}]) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "Hello, world" and len(texts) == 4
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].thinking == "step by step" and final.content[0].signature == "sig-1"
    assert final.content[2].input == {"expr": "2+2", "nested": {"k": [1, 2]}}
    assert final.content[2].id == "toolu_x"
    assert final.stop_reason == "tool_use"
    assert final.usage.input_tokens == 12 and final.usage.output_tokens == 34
    assert final.usage.cache_read_input_tokens == 5
    req = fake_upstream.requests[0]
    assert req.body["stream"] is True

    fake_upstream.enqueue(fa.error(529, "busy"))
    with pytest.raises(anthropic.OverloadedError):
        c.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "x"}])
