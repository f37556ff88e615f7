"""Every error class the SDK maps from a status, raised by the real server: 400 (malformed JSON,
schema violations naming the field), 401, 404, 409, 413, 429. The body is always
`{"type":"error","error":{"type":...,"message":...}}`."""

import time

import anthropic
import pytest

from conftest import make_agent, make_env, raw_request, send_text, user_message

JSON = {"headers": {"content-type": "application/json"}}


def post_raw(client, path, body: bytes):
    return client.post(path, cast_to=object, content=body, options=JSON)


def assert_error_body(exc, kind):
    assert exc.body["type"] == "error"
    assert exc.body["error"]["type"] == kind
    assert isinstance(exc.body["error"]["message"], str) and exc.body["error"]["message"]


@pytest.fixture
def session(client):
    a = make_agent(client)
    return client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)


# ----------------------------------------------------------------------------- 400


@pytest.mark.parametrize("body", [b'{"events": [', b"{'events': []}", b"not json", b'{"events": [}'])
def test_malformed_json_is_400(client, session, body):
    with pytest.raises(anthropic.BadRequestError) as ei:
        post_raw(client, f"/v1/sessions/{session.id}/events", body)
    assert ei.value.status_code == 400
    assert_error_body(ei.value, "invalid_request_error")
    assert "JSON" in ei.value.message


def test_trailing_garbage_after_json_is_400(client, session):
    # found at d53519f: the trailing bytes were ignored and the event was logged
    body = b'{"events": [{"type": "user.message", "content": [{"type": "text", "text": "hi"}]}]} trailing'
    with pytest.raises(anthropic.BadRequestError) as ei:
        post_raw(client, f"/v1/sessions/{session.id}/events", body)
    assert "JSON" in ei.value.message
    assert list(client.beta.sessions.events.list(session.id)) == []


def test_empty_body_is_400(client):
    with pytest.raises(anthropic.BadRequestError) as ei:
        post_raw(client, "/v1/agents", b"")
    assert "empty" in ei.value.message


@pytest.mark.parametrize("body,field", [
    (b'{"name": 5, "model": "scripted/echo"}', "name"),
    (b'{"name": "x"}', "model"),
    (b'{"name": "x", "model": "scripted/echo", "bogus": 1}', "bogus"),
    (b'{"name": "x", "model": "scripted/echo", "metadata": {"k": 1}}', "metadata.k"),
    (b'{"name": "x", "model": "scripted/echo", "tools": [{"type": "custom", "name": "t", "description": "d"}]}',
     "input_schema"),
])
def test_agent_schema_violations_name_the_field(client, body, field):
    with pytest.raises(anthropic.BadRequestError) as ei:
        post_raw(client, "/v1/agents", body)
    assert_error_body(ei.value, "invalid_request_error")
    assert field in ei.value.body["error"]["message"]
    assert list(client.beta.agents.list()) == []


@pytest.mark.parametrize("event,field", [
    ({"type": "agent.message", "content": []}, "events[0].type"),
    ({"type": "user.message", "content": [{"type": "text", "text": "x"}], "extra": 1}, "extra"),
    ({"type": "user.message", "content": []}, "events[0].content"),
    ({"type": "user.message", "content": [{"type": "text"}]}, "text"),
    ({"type": "user.custom_tool_result", "custom_tool_use_id": "sevt_x"}, "events[0].custom_tool_use_id"),
])
def test_event_schema_violations_name_the_field(client, session, event, field):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(session.id, events=[event])
    assert field in ei.value.message
    assert list(client.beta.sessions.events.list(session.id)) == []


def test_wrong_type_inside_an_event_names_the_field_path(client, session):
    # found at d53519f: reported as `events[0]: invalid type ...` (tagged enum lost the path)
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(session.id, events=[{"type": "user.message", "content": "hi"}])
    assert "events[0].content" in ei.value.message


def test_missing_field_inside_a_block_names_the_full_path(client, session):
    # found at d53519f: reported as `events[1]: missing field `text``
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(session.id, events=[
            user_message("fine"), {"type": "user.message", "content": [{"type": "text"}]}])
    assert "events[1].content[0]" in ei.value.message


def test_a_bad_event_rejects_the_whole_batch(client, session):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(session.id, events=[user_message("ok"), {"type": "user.message",
                                                                                 "content": []}])
    assert "events[1].content" in ei.value.message
    assert list(client.beta.sessions.events.list(session.id)) == []
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(session.id, events=[])
    assert "events" in ei.value.message


def test_bad_query_parameters_are_400(client, session):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.list(limit=0)
    assert "limit" in ei.value.message
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.list(order="sideways")  # type: ignore[arg-type]
    assert "order" in ei.value.message
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.retrieve(make_agent(client).id, version=-1)
    assert "version" in ei.value.message


# ----------------------------------------------------------------------------- 401


def test_missing_key_is_401(client, server):
    with pytest.raises(anthropic.AuthenticationError) as ei:
        client.beta.agents.list(extra_headers={"X-Api-Key": anthropic.Omit(), "Authorization": anthropic.Omit()})
    assert ei.value.status_code == 401
    assert_error_body(ei.value, "authentication_error")
    r = raw_request(server, "GET", "/v1/sessions", key=None)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


def test_unknown_key_is_401(server):
    bad = server.client(key="sk-not-registered")
    with pytest.raises(anthropic.AuthenticationError) as ei:
        bad.beta.agents.list()
    assert_error_body(ei.value, "authentication_error")
    with pytest.raises(anthropic.AuthenticationError):
        bad.beta.environments.create(name="x")
    with pytest.raises(anthropic.AuthenticationError):
        bad.beta.sessions.events.stream("sesn_whatever")


def test_bearer_token_is_accepted(server):
    c = anthropic.Anthropic(base_url=server.url, auth_token=server.key, max_retries=0, timeout=10)
    a = c.beta.agents.create(name="via-bearer", model="scripted/echo")
    assert c.beta.agents.retrieve(a.id).name == "via-bearer"
    wrong = anthropic.Anthropic(base_url=server.url, auth_token="nope", max_retries=0, timeout=10)
    with pytest.raises(anthropic.AuthenticationError):
        wrong.beta.agents.list()


# ----------------------------------------------------------------------------- 404


def test_unknown_ids_are_404(client, session):
    cases = [
        lambda: client.beta.agents.retrieve("agent_01nope"),
        lambda: client.beta.environments.retrieve("env_01nope"),
        lambda: client.beta.sessions.retrieve("sesn_01nope"),
        lambda: client.beta.sessions.events.list("sesn_01nope"),
        lambda: send_text(client, "sesn_01nope", "x"),
        lambda: client.beta.sessions.update("sesn_01nope", title="x"),
        lambda: client.get("/v1/no/such/route", cast_to=object),
    ]
    for call in cases:
        with pytest.raises(anthropic.NotFoundError) as ei:
            call()
        assert ei.value.status_code == 404
        assert_error_body(ei.value, "not_found_error")


def test_wrong_method_has_an_error_body(client, server):
    # found at d53519f: 405 with an empty body
    a = make_agent(client)
    r = raw_request(server, "DELETE", f"/v1/agents/{a.id}")
    assert r.status_code in (404, 405)
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] in ("not_found_error", "invalid_request_error")
    assert body["error"]["message"]


# ----------------------------------------------------------------------------- 409


def test_conflicts_are_409(client, session):
    a = make_agent(client)
    client.beta.agents.update(a.id, version=1, system="s")
    with pytest.raises(anthropic.ConflictError) as ei:
        client.beta.agents.update(a.id, version=1, system="t")
    assert_error_body(ei.value, "conflict_error")
    assert "version" in ei.value.message

    client.beta.sessions.archive(session.id)
    with pytest.raises(anthropic.ConflictError) as ei:
        send_text(client, session.id, "too late")
    assert_error_body(ei.value, "conflict_error")
    assert "archived" in ei.value.message
    # an interrupt is an event too
    with pytest.raises(anthropic.ConflictError):
        client.beta.sessions.events.send(session.id, events=[{"type": "user.interrupt"}])


# ----------------------------------------------------------------------------- 413


def test_oversize_body_is_413(client, session):
    big = "x" * (33 * 1024 * 1024)
    with pytest.raises(anthropic.RequestTooLargeError) as ei:
        client.beta.sessions.events.send(session.id, events=[user_message(big)])
    assert isinstance(ei.value, anthropic.ContentTooLargeError)
    assert ei.value.status_code == 413
    assert_error_body(ei.value, "request_too_large")
    assert list(client.beta.sessions.events.list(session.id)) == []
    # just under the limit is fine (sent raw: the point is the size, not the SDK's encoder)

    ok = b'{"events": [{"type": "user.interrupt"}]}'
    ok = ok[:-1] + b" " * (32 * 1024 * 1024 - len(ok)) + b"}"
    assert len(ok) == 32 * 1024 * 1024
    sent = post_raw(client, f"/v1/sessions/{session.id}/events", ok)
    assert sent["data"][0]["type"] == "user.interrupt"



# ----------------------------------------------------------------------------- 429


def test_rate_limit_is_429_per_key(server_factory):
    srv = server_factory(rate_limit=2)
    c = srv.client()
    other_key = srv.create_key("default")
    other = srv.client(key=other_key)

    ok, limited = 0, []
    for _ in range(12):
        try:
            c.beta.agents.list()
            ok += 1
        except anthropic.RateLimitError as e:
            limited.append(e)
    assert limited, "12 back-to-back requests at 2/s never hit the limit"
    assert ok >= 2, "the burst allowance let nothing through"
    e = limited[0]
    assert e.status_code == 429
    assert_error_body(e, "rate_limit_error")
    assert e.response.headers.get("retry-after")

    # another key of the same workspace has its own bucket
    assert other.beta.agents.list().data == []

    # the bucket refills
    deadline = time.monotonic() + 5
    while True:
        try:
            c.beta.agents.list()
            break
        except anthropic.RateLimitError:
            assert time.monotonic() < deadline, "the rate limit never let requests through again"
            time.sleep(0.1)


def test_sdk_retries_honour_429(server_factory):
    srv = server_factory(rate_limit=2)
    c = srv.client(max_retries=4)
    # the SDK backs off on 429 (retry-after: 1) and gets through every time
    for _ in range(7):
        c.beta.agents.list()
