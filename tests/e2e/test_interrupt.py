"""user.interrupt: the in-flight upstream request is cancelled (the fake upstream sees the
connection close) and the session rests promptly with end_turn."""

import time

import pytest

import fake_anthropic as fa
from conftest import (
    collect_stream, list_raw_events, make_agent, make_env, send_text, types_of, wait_events, wait_idle,
)

CLAUDE = "claude-sonnet-4-6"
INTERRUPT = [{"type": "user.interrupt"}]


def new_session(client):
    a = make_agent(client, model=CLAUDE)
    return client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)


def test_interrupt_cancels_a_hanging_upstream_request(client, fake_upstream):
    s = new_session(client)
    fake_upstream.enqueue(fa.hang(partial="I was saying"), fa.reply_text("fresh start"))
    send_text(client, s.id, "tell me a long story")
    req = fake_upstream.wait_for_requests(1)[0]
    # the upstream is mid-stream: headers and the first text delta were sent, then silence
    time.sleep(0.1)
    assert not req.disconnected.is_set()
    assert client.beta.sessions.retrieve(s.id).status == "running"

    stream = client.beta.sessions.events.stream(s.id)
    t0 = time.monotonic()
    client.beta.sessions.events.send(s.id, events=INTERRUPT)
    items = collect_stream(stream, lambda item, items: item.type == "session.status_idle", timeout=5)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"idle came {elapsed:.2f}s after the interrupt"
    assert items[-1].stop_reason.type == "end_turn"
    assert client.beta.sessions.retrieve(s.id).status == "idle"
    assert req.disconnected.wait(1.0), "the upstream connection stayed open after the interrupt"
    assert req.disconnected_at - t0 < 1.0

    evs = list_raw_events(client, s.id)
    t = types_of(evs)
    assert t[:3] == ["user.message", "session.status_running", "span.model_request_start"]
    assert "user.interrupt" in t
    assert "agent.message" not in t, "the half-streamed reply must not be logged"
    end = [e for e in evs if e["type"] == "span.model_request_end"]
    assert len(end) == 1 and end[0]["is_error"] is True
    assert end[0]["model_request_start_id"] == evs[2]["id"]
    assert t[-1] == "session.status_idle"

    # the session is usable again; the partial reply is not part of the conversation
    send_text(client, s.id, "ok, something else")
    evs = wait_idle(client, s.id, count=2)
    assert [e["content"][0]["text"] for e in evs if e["type"] == "agent.message"] == ["fresh start"]
    r2 = fake_upstream.messages_requests()[1]
    assert "I was saying" not in r2.text
    texts = [b["text"] for b in r2.blocks("text")]
    assert texts == ["tell me a long story", "ok, something else"]


def test_interrupt_during_retry_backoff(server_factory, fake_upstream):
    srv = server_factory(upstream=fake_upstream, model_attempts=5, retry_base_ms=10_000)
    client = srv.client()
    s = new_session(client)
    fake_upstream.default = fa.error(529)
    send_text(client, s.id, "go")
    fake_upstream.wait_for_requests(1)
    # the first failure is logged as retrying; the next attempt is 5-10 s away
    deadline = time.monotonic() + 5
    while "session.error" not in types_of(list_raw_events(client, s.id)):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    t0 = time.monotonic()
    client.beta.sessions.events.send(s.id, events=INTERRUPT)
    evs = wait_idle(client, s.id, timeout=3)
    assert time.monotonic() - t0 < 1.0
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}
    time.sleep(0.3)
    assert len(fake_upstream.messages_requests()) == 1, "a retry was made after the interrupt"


def test_interrupt_of_an_idle_session_is_harmless(client, fake_upstream):
    s = new_session(client)
    send_text(client, s.id, "hello")
    wait_idle(client, s.id)
    sent = client.beta.sessions.events.send(s.id, events=INTERRUPT)
    assert sent.data[0].type == "user.interrupt"
    assert client.beta.sessions.retrieve(s.id).status == "idle"
    time.sleep(0.2)
    evs = list_raw_events(client, s.id)
    assert types_of(evs)[-1] == "user.interrupt"
    assert len(fake_upstream.messages_requests()) == 1
    # and the next turn runs normally
    send_text(client, s.id, "again")
    evs = wait_idle(client, s.id, count=2)
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}


def test_interrupt_with_a_message_in_the_same_batch(client, fake_upstream):
    s = new_session(client)
    fake_upstream.enqueue(fa.hang(), fa.reply_text("new topic answered"))
    send_text(client, s.id, "first topic")
    req = fake_upstream.wait_for_requests(1)[0]
    client.beta.sessions.events.send(s.id, events=INTERRUPT + [
        {"type": "user.message", "content": [{"type": "text", "text": "new topic"}]}])
    assert req.disconnected.wait(2)
    evs = wait_idle(client, s.id)
    msgs = [e["content"][0]["text"] for e in evs if e["type"] == "agent.message"]
    assert msgs == ["new topic answered"]
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}


def test_interrupt_while_waiting_for_a_tool_result_ends_the_turn(client, fake_upstream):
    a = make_agent(client, model=CLAUDE, tools=[{
        "type": "custom", "name": "slow_tool", "description": "d", "input_schema": {"type": "object"}}])
    s = client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)
    fake_upstream.enqueue(fa.message(fa.tool_use("slow_tool", {})))
    send_text(client, s.id, "use the tool")
    evs = wait_events(client, s.id, lambda e: e and e[-1]["type"] == "session.status_idle")
    assert evs[-1]["stop_reason"]["type"] == "requires_action"
    client.beta.sessions.events.send(s.id, events=INTERRUPT)
    evs = wait_events(client, s.id, lambda e: e[-1]["type"] == "session.status_idle"
                      and e[-1]["stop_reason"]["type"] == "end_turn", timeout=2,
                      what="an end_turn idle after the interrupt")
    assert len(fake_upstream.messages_requests()) == 1
