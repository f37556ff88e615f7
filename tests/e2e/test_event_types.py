"""Every event type agentd logs, each validated strictly against the SDK's declared types
(`pydantic.TypeAdapter(BetaManagedAgentsSessionEvent)` on the raw JSON, plus no undeclared
fields), with its fields checked against what the fake upstream did."""

import anthropic
import pytest

import fake_anthropic as fa
from conftest import (
    list_raw_events, make_agent, make_env, send_text, types_of, validate_event,
    wait_events, wait_idle,
)

CLAUDE = "claude-sonnet-4-6"
TOOL = {
    "type": "custom",
    "name": "lookup",
    "description": "Look a thing up",
    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}}},
}


def new_session(client, **kw):
    a = make_agent(client, model=CLAUDE, **kw)
    return client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)


def check_all(events):
    for e in events:
        validate_event(e)
    # the SDK's own (lenient) parsing agrees on every type
    return {e["type"] for e in events}


def test_turn_events_fields(client, fake_upstream):
    s = new_session(client, system="be brief")
    fake_upstream.enqueue(fa.message(fa.text("hello there"), input_tokens=21, output_tokens=4,
                                     cache_creation_input_tokens=2, cache_read_input_tokens=3))
    sent = send_text(client, s.id, "hi")
    evs = wait_idle(client, s.id)
    check_all(evs)
    by_type = {e["type"]: e for e in evs}
    assert types_of(evs) == ["user.message", "session.status_running", "span.model_request_start",
                             "agent.message", "span.model_request_end", "session.usage", "session.status_idle"]
    um = by_type["user.message"]
    assert um["id"] == sent.data[0].id and um["content"] == [{"type": "text", "text": "hi"}]
    assert by_type["agent.message"]["content"] == [{"type": "text", "text": "hello there"}]
    end = by_type["span.model_request_end"]
    assert end["model_request_start_id"] == by_type["span.model_request_start"]["id"]
    assert end["is_error"] is False
    assert end["model_usage"] == {"input_tokens": 21, "output_tokens": 4, "cache_creation_input_tokens": 2,
                                  "cache_read_input_tokens": 3}
    usage = by_type["session.usage"]["usage"]
    assert usage["input_tokens"] == 21 and usage["output_tokens"] == 4
    assert usage["cache_read_input_tokens"] == 3
    assert usage["cache_creation"]["ephemeral_5m_input_tokens"] == 2
    idle = by_type["session.status_idle"]
    assert idle["stop_reason"] == {"type": "end_turn"}
    # processed_at never goes backwards and ids are unique
    stamps = [e["processed_at"] for e in evs]
    assert stamps == sorted(stamps)
    assert len({e["id"] for e in evs}) == len(evs)


def test_thinking_event_and_signature_round_trip(client, fake_upstream):
    s = new_session(client)
    fake_upstream.enqueue(
        fa.message(fa.thinking("Let me think about this carefully.", signature="EqQBCkYIBxgCKkB=="),
                   fa.text("The answer is 4.")),
        fa.message(fa.redacted_thinking("ENCRYPTED-BLOB"), fa.text("Still 4.")),
        fa.reply_text("third"),
    )
    send_text(client, s.id, "what is 2+2?")
    evs = wait_idle(client, s.id)
    check_all(evs)
    thinking = [e for e in evs if e["type"] == "agent.thinking"]
    assert len(thinking) == 1
    # the thinking text and signature are never shown to API clients
    assert set(thinking[0]) == {"id", "type", "processed_at"}
    assert types_of(evs).index("agent.thinking") < types_of(evs).index("agent.message")

    send_text(client, s.id, "sure?")
    evs = wait_idle(client, s.id, count=2)
    check_all(evs)
    assert len([e for e in evs if e["type"] == "agent.thinking"]) == 2

    send_text(client, s.id, "really?")
    wait_idle(client, s.id, count=3)

    reqs = fake_upstream.messages_requests()
    assert len(reqs) == 3
    # turn 2 resends turn 1's assistant message with the thinking block and its signature first
    assert reqs[1].messages[1]["role"] == "assistant"
    assert reqs[1].messages[1]["content"][0] == {
        "type": "thinking", "thinking": "Let me think about this carefully.", "signature": "EqQBCkYIBxgCKkB=="}
    assert reqs[1].messages[1]["content"][1]["type"] == "text"
    assert reqs[1].messages[1]["content"][1]["text"] == "The answer is 4."
    # turn 3 also carries the redacted thinking back untouched
    redacted = reqs[2].blocks("redacted_thinking")
    assert redacted == [{"type": "redacted_thinking", "data": "ENCRYPTED-BLOB"}]
    assert len(reqs[2].blocks("thinking")) == 1


def test_custom_tool_events(client, fake_upstream):
    s = new_session(client, tools=[TOOL])
    fake_upstream.enqueue(
        fa.message(fa.text("Looking it up."), fa.tool_use("lookup", {"q": "päris ☃", "n": 3}, pieces=5)),
        fa.reply_text("Found it."),
    )
    send_text(client, s.id, "find paris")
    evs = wait_events(client, s.id, lambda e: e and e[-1]["type"] == "session.status_idle")
    check_all(evs)
    use = [e for e in evs if e["type"] == "agent.custom_tool_use"]
    assert len(use) == 1
    assert use[0]["name"] == "lookup"
    assert use[0]["input"] == {"q": "päris ☃", "n": 3}
    idle = evs[-1]
    assert idle["stop_reason"] == {"type": "requires_action", "event_ids": [use[0]["id"]]}

    res = client.beta.sessions.events.send(s.id, events=[{
        "type": "user.custom_tool_result", "custom_tool_use_id": use[0]["id"],
        "content": [{"type": "text", "text": "Paris, France"}], "is_error": False}])
    assert res.data[0].type == "user.custom_tool_result"
    evs = wait_idle(client, s.id, count=2)
    check_all(evs)
    result = [e for e in evs if e["type"] == "user.custom_tool_result"][0]
    assert result["custom_tool_use_id"] == use[0]["id"]
    assert result["content"] == [{"type": "text", "text": "Paris, France"}]
    assert result["is_error"] is False
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}


@pytest.mark.parametrize("status,kind", [
    (529, "model_overloaded_error"),
    (429, "model_rate_limited_error"),
    (500, "model_request_failed_error"),
])
def test_retrying_error_events(client, fake_upstream, status, kind):
    s = new_session(client)
    fake_upstream.enqueue(fa.error(status, message=f"upstream says {status}"), fa.reply_text("recovered"))
    send_text(client, s.id, "go")
    evs = wait_idle(client, s.id)
    check_all(evs)
    errs = [e for e in evs if e["type"] == "session.error"]
    assert len(errs) == 1
    assert errs[0]["error"]["type"] == kind
    assert errs[0]["error"]["retry_status"] == {"type": "retrying"}
    assert f"upstream says {status}" in errs[0]["error"]["message"]
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}
    assert [e["content"][0]["text"] for e in evs if e["type"] == "agent.message"] == ["recovered"]


def test_exhausted_and_terminal_error_events(server_factory, fake_upstream):
    srv = server_factory(upstream=fake_upstream, model_attempts=2)
    client = srv.client()
    s = new_session(client)
    fake_upstream.handler = lambda req: fa.error(529) if "exhaust" in req.text else fa.error(400, "bad tool schema")
    send_text(client, s.id, "exhaust me")
    evs = wait_idle(client, s.id)
    check_all(evs)
    errs = [e["error"] for e in evs if e["type"] == "session.error"]
    assert [e["retry_status"]["type"] for e in errs] == ["retrying", "exhausted"]
    assert evs[-1]["stop_reason"] == {"type": "retries_exhausted"}
    ends = [e for e in evs if e["type"] == "span.model_request_end"]
    assert len(ends) == 1 and ends[0]["is_error"] is True

    s2 = new_session(client)
    send_text(client, s2.id, "terminal")
    evs2 = wait_idle(client, s2.id)
    check_all(evs2)
    errs2 = [e["error"] for e in evs2 if e["type"] == "session.error"]
    assert len(errs2) == 1
    assert errs2[0]["type"] == "model_request_failed_error"
    assert errs2[0]["retry_status"] == {"type": "terminal"}
    assert "bad tool schema" in errs2[0]["message"]
    assert evs2[-1]["stop_reason"] == {"type": "end_turn"}


def test_interrupt_and_updated_events(client, fake_upstream):
    s = new_session(client)
    client.beta.sessions.update(s.id, title="t1", metadata={"m": "1"})
    fake_upstream.enqueue(fa.hang())
    send_text(client, s.id, "long job")
    fake_upstream.wait_for_requests(1)
    sent = client.beta.sessions.events.send(s.id, events=[{"type": "user.interrupt"}])
    assert sent.data[0].type == "user.interrupt"
    evs = wait_idle(client, s.id)
    types = check_all(evs)
    assert {"session.updated", "user.interrupt"} <= types
    upd = [e for e in evs if e["type"] == "session.updated"][0]
    assert upd["title"] == "t1" and upd["metadata"] == {"m": "1"}
    intr = [e for e in evs if e["type"] == "user.interrupt"][0]
    assert set(intr) == {"id", "type", "processed_at"}


def test_tool_confirmation_without_a_tool_use_is_refused(client):
    s = new_session(client)
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(s.id, events=[{
            "type": "user.tool_confirmation", "tool_use_id": "sevt_nope", "result": "allow"}])
    assert "events[0].tool_use_id" in ei.value.message
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(s.id, events=[{
            "type": "user.custom_tool_result", "custom_tool_use_id": "sevt_nope"}])
    assert "events[0].custom_tool_use_id" in ei.value.message
    assert list_raw_events(client, s.id) == []


def test_every_event_type_is_covered(client, fake_upstream):
    """One session that produces every event type agentd can log, all validated strictly."""
    s = new_session(client, tools=[TOOL])
    client.beta.sessions.update(s.id, title="cover")
    fake_upstream.enqueue(
        fa.error(529),
        fa.message(fa.thinking("hmm"), fa.tool_use("lookup", {"q": "x"})),
        fa.reply_text("done"),
        fa.hang(),
    )
    send_text(client, s.id, "start")
    evs = wait_events(client, s.id, lambda e: e and e[-1]["type"] == "session.status_idle")
    tool_id = [e for e in evs if e["type"] == "agent.custom_tool_use"][0]["id"]
    client.beta.sessions.events.send(s.id, events=[{
        "type": "user.custom_tool_result", "custom_tool_use_id": tool_id,
        "content": [{"type": "text", "text": "42"}]}])
    wait_idle(client, s.id, count=2)
    send_text(client, s.id, "hang now")
    fake_upstream.wait_for_requests(4)
    client.beta.sessions.events.send(s.id, events=[{"type": "user.interrupt"}])
    evs = wait_idle(client, s.id, count=3)
    types = check_all(evs)
    expected = {
        "user.message", "user.interrupt", "user.custom_tool_result", "agent.message", "agent.thinking",
        "agent.custom_tool_use", "session.status_running", "session.status_idle", "session.error",
        "session.usage", "session.updated", "span.model_request_start", "span.model_request_end",
    }
    assert expected <= types, expected - types
    # the SDK parses every listed event into its typed model too
    parsed = list(client.beta.sessions.events.list(s.id))
    assert [p.type for p in parsed] == types_of(evs)


def test_a_refusal_rests_the_session_with_the_refusal_stop_reason(client, fake_upstream):
    import fake_anthropic as fa
    from conftest import list_raw_events, make_agent, make_env, send_text, validate_event, wait_idle

    agent = make_agent(client, model="claude-sonnet-4-6")
    s = client.beta.sessions.create(agent=agent.id, environment_id=make_env(client).id)
    fake_upstream.enqueue(fa.message(fa.text("I can't help with that."), stop_reason="refusal"))
    send_text(client, s.id, "something it refuses")
    evs = wait_idle(client, s.id, timeout=15)
    idle = [e for e in evs if e["type"] == "session.status_idle"][-1]
    assert idle["stop_reason"] == {"type": "refusal"}, idle
    assert idle["stop_details"]["type"] == "refusal", idle
    for e in evs:
        validate_event(e)
    # The session goes on: the next message is answered as usual.
    fake_upstream.enqueue(fa.reply_text("Sure."))
    send_text(client, s.id, "something else")
    evs = wait_idle(client, s.id, count=2, timeout=15)
    assert [e for e in evs if e["type"] == "session.status_idle"][-1]["stop_reason"] == {"type": "end_turn"}
    assert list_raw_events(client, s.id)[-1]["type"] == "session.status_idle"
