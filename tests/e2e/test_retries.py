"""Upstream failures: transient ones are retried with `session.error` (retry_status retrying),
give up with `exhausted` and `retries_exhausted`, and permanent ones end with `terminal`."""

import socket
import time

import fake_anthropic as fa
from conftest import make_agent, make_env, send_text, types_of, validate_event, wait_idle

CLAUDE = "claude-sonnet-4-6"


def new_session(client):
    a = make_agent(client, model=CLAUDE)
    return client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)


def errors(evs):
    return [e["error"] for e in evs if e["type"] == "session.error"]


def test_529_twice_then_success(client, fake_upstream):
    s = new_session(client)
    fake_upstream.enqueue(fa.error(529, "Overloaded"), fa.error(529, "Overloaded"), fa.reply_text("third time lucky"))
    send_text(client, s.id, "please")
    evs = wait_idle(client, s.id)
    for e in evs:
        validate_event(e)
    errs = errors(evs)
    assert [e["type"] for e in errs] == ["model_overloaded_error"] * 2
    assert [e["retry_status"]["type"] for e in errs] == ["retrying", "retrying"]
    # each retry reschedules the session, and the next attempt runs it again
    assert types_of(evs) == [
        "user.message", "session.status_running", "span.model_request_start",
        "session.error", "session.status_rescheduled", "session.status_running",
        "session.error", "session.status_rescheduled", "session.status_running",
        "agent.message", "span.model_request_end", "session.usage", "session.status_idle",
    ]
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}
    assert [e["content"][0]["text"] for e in evs if e["type"] == "agent.message"] == ["third time lucky"]
    # one span for the whole retried request, closed without error
    end = [e for e in evs if e["type"] == "span.model_request_end"][0]
    assert end["is_error"] is False and end["model_request_start_id"] == evs[2]["id"]
    # every attempt sent the same request
    reqs = fake_upstream.messages_requests()
    assert len(reqs) == 3
    assert reqs[0].body == reqs[1].body == reqs[2].body


def test_always_529_exhausts_the_attempts(server_factory, fake_upstream):
    srv = server_factory(upstream=fake_upstream, model_attempts=3)
    client = srv.client()
    s = new_session(client)
    fake_upstream.default = fa.error(529)
    send_text(client, s.id, "please")
    evs = wait_idle(client, s.id)
    errs = errors(evs)
    assert [e["retry_status"]["type"] for e in errs] == ["retrying", "retrying", "exhausted"]
    assert all(e["type"] == "model_overloaded_error" for e in errs)
    assert evs[-1]["stop_reason"] == {"type": "retries_exhausted"}
    assert len(fake_upstream.messages_requests()) == 3
    end = [e for e in evs if e["type"] == "span.model_request_end"]
    assert len(end) == 1 and end[0]["is_error"] is True
    assert "agent.message" not in types_of(evs)
    time.sleep(0.2)
    assert len(fake_upstream.messages_requests()) == 3, "kept calling after giving up"

    # a new message starts over
    fake_upstream.default = fa.reply_text("back")
    send_text(client, s.id, "try again")
    evs = wait_idle(client, s.id, count=2)
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}
    assert [e["content"][0]["text"] for e in evs if e["type"] == "agent.message"] == ["back"]


def test_upstream_400_is_terminal(client, fake_upstream):
    s = new_session(client)
    fake_upstream.enqueue(fa.error(400, "messages: roles must alternate"))
    send_text(client, s.id, "x")
    evs = wait_idle(client, s.id)
    errs = errors(evs)
    assert len(errs) == 1
    assert errs[0]["type"] == "model_request_failed_error"
    assert errs[0]["retry_status"] == {"type": "terminal"}
    assert "roles must alternate" in errs[0]["message"]
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}
    assert len(fake_upstream.messages_requests()) == 1, "a 400 must not be retried"


def test_upstream_401_is_terminal(client, fake_upstream):
    s = new_session(client)
    fake_upstream.enqueue(fa.error(401, "invalid x-api-key"))
    send_text(client, s.id, "x")
    evs = wait_idle(client, s.id)
    assert [e["retry_status"]["type"] for e in errors(evs)] == ["terminal"]
    assert len(fake_upstream.messages_requests()) == 1


def test_429_and_retry_after_are_honoured(client, fake_upstream):
    s = new_session(client)
    fake_upstream.enqueue(fa.error(429, "slow down", retry_after=0.6), fa.reply_text("ok"))
    send_text(client, s.id, "x")
    evs = wait_idle(client, s.id)
    errs = errors(evs)
    assert [(e["type"], e["retry_status"]["type"]) for e in errs] == [("model_rate_limited_error", "retrying")]
    reqs = fake_upstream.messages_requests()
    assert len(reqs) == 2
    gap = reqs[1].received_at - reqs[0].received_at
    assert gap >= 0.55, f"retried after {gap:.2f}s despite retry-after: 0.6"


def test_error_event_inside_a_200_stream_is_retried(client, fake_upstream):
    s = new_session(client)
    fake_upstream.enqueue(fa.stream_error("overloaded_error"), fa.reply_text("second try"))
    send_text(client, s.id, "x")
    evs = wait_idle(client, s.id)
    errs = errors(evs)
    assert [(e["type"], e["retry_status"]["type"]) for e in errs] == [("model_overloaded_error", "retrying")]
    # the broken stream's partial text never shows up
    assert [e["content"][0]["text"] for e in evs if e["type"] == "agent.message"] == ["second try"]


def test_unreachable_upstream_is_retried_then_exhausted(server_factory):
    # a port nobody listens on
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    srv = server_factory(upstream_url=f"http://127.0.0.1:{port}", model_attempts=2)
    client = srv.client()
    s = new_session(client)
    send_text(client, s.id, "anyone?")
    evs = wait_idle(client, s.id)
    errs = errors(evs)
    assert [e["retry_status"]["type"] for e in errs] == ["retrying", "exhausted"]
    assert all(e["type"] == "model_request_failed_error" for e in errs)
    assert evs[-1]["stop_reason"] == {"type": "retries_exhausted"}
    for e in evs:
        validate_event(e)


def test_scripted_model_error_injection_is_retried(client, scripts_dir):
    """The same retry path through agentd's built-in scripted model (no HTTP upstream)."""
    from conftest import write_script
    model = write_script(scripts_dir, "flaky", "turns:\n  - error: {status: 529, message: busy, times: 2}\n"
                                                "    text: made it\n")
    a = make_agent(client, model=model)
    s = client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)
    send_text(client, s.id, "go")
    evs = wait_idle(client, s.id)
    assert [(e["type"], e["retry_status"]["type"]) for e in errors(evs)] == \
        [("model_overloaded_error", "retrying")] * 2
    assert [e["content"][0]["text"] for e in evs if e["type"] == "agent.message"] == ["made it"]
