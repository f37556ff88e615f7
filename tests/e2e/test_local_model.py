"""A model run in-process on the CPU (`local/smollm2`, SmolLM2-135M-Instruct from its GGUF
file): a session with no API key configured anywhere, through the official SDK. The model file
must have been pulled (`agentd models pull smollm2`; scripts/test.sh does it)."""

from __future__ import annotations

import anthropic
import pytest

from conftest import list_raw_events, make_env, send_text, validate_event, wait_idle


def test_a_session_on_the_local_model_answers_with_no_key(client):
    agent = client.beta.agents.create(name="tiny", model="local/smollm2",
                                      system="You are a helpful assistant. Answer briefly.")
    s = client.beta.sessions.create(agent=agent.id, environment_id=make_env(client).id)
    send_text(client, s.id, "What is the capital of France?")
    evs = wait_idle(client, s.id, timeout=60)
    for e in evs:
        validate_event(e)
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}
    [msg] = [e for e in evs if e["type"] == "agent.message"]
    assert "Paris" in msg["content"][0]["text"]
    [end] = [e for e in evs if e["type"] == "span.model_request_end"]
    assert end["model_usage"]["input_tokens"] > 0 and end["model_usage"]["output_tokens"] > 0
    assert client.beta.sessions.retrieve(s.id).usage.output_tokens > 0


def test_a_local_model_that_is_not_there_is_refused_with_what_to_do(client):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name="x", model="local/no-such-model")
    assert "no-such-model.gguf" in ei.value.message


def test_custom_tools_on_a_small_model_never_break_the_session(client):
    """SmolLM2-135M rarely writes a well-formed call; whatever it writes, the turn ends cleanly
    (a text answer, or a call waiting for its result)."""
    tool = {"type": "custom", "name": "get_weather", "description": "Current weather for a city.",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    agent = client.beta.agents.create(name="tooly", model="local/smollm2", tools=[tool])
    s = client.beta.sessions.create(agent=agent.id, environment_id=make_env(client).id)
    send_text(client, s.id, "What is the weather in Paris? Use get_weather.")
    evs = wait_idle(client, s.id, timeout=60)
    for e in evs:
        validate_event(e)
    assert evs[-1]["stop_reason"]["type"] in ("end_turn", "requires_action")
    assert not [e for e in evs if e["type"] == "session.error"]
