"""MCP toolsets end to end: agentd is the MCP client of a real MCP server (tests/e2e/mcp_server.py,
the official Python `mcp` package over streamable HTTP on loopback, which requires a bearer
token). The SDK creates agents with `mcp_servers` and `mcp_toolset` tools; the fake upstream
model calls the tools as `mcp__<server>__<tool>`; the log shows `agent.mcp_tool_use` and
`agent.mcp_tool_result`, strictly valid against the SDK's types.

The token reaches agentd as a vault credential for the server's URL, in the session's vaults;
it must never appear in an event, a model request or agentd's log."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import pytest

import fake_anthropic as fa
from conftest import idle_count, list_raw_events, make_env, send_text, types_of, validate_event, validate_model, \
    wait_events, wait_until

CLAUDE = "claude-sonnet-4-6"
TOKEN = "mcp-e2e-secret-7f3a9c"
HERE = Path(__file__).resolve().parent


class McpServer:
    def __init__(self, tmp: Path) -> None:
        self.record = tmp / "mcp-record.jsonl"
        self.record.touch()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "mcp_server.py"), "--token", TOKEN, "--record", str(self.record)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = ""
        while not line.startswith("listening on "):
            line = self.proc.stdout.readline()
            assert line, "the MCP server exited before listening"
        self.base = line.split()[-1]
        self.url = f"{self.base}/mcp/"
        self.malformed_url = f"{self.base}/malformed/mcp"
        self.broken_url = f"{self.base}/broken/mcp"
        self.sse_url = f"{self.base}/legacy/sse"
        self.many_url = f"{self.base}/many/mcp"

    def seen(self) -> list:
        return [json.loads(l) for l in self.record.read_text().splitlines() if l.strip()]

    def methods(self) -> list:
        return [r["method"] for r in self.seen() if r.get("method")]

    def calls(self, name: str) -> list:
        return [r for r in self.seen() if r.get("call") == name]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def mcp(tmp_path):
    try:
        import mcp as _  # noqa: F401
    except ImportError:
        pytest.fail("the `mcp` package is missing: pip install -r tests/e2e/requirements.txt")
    s = McpServer(tmp_path)
    yield s
    s.close()


def agentd_env(**extra) -> dict:
    env = {
        # The test server is on loopback, which no environment reaches unless the operator says.
        "AGENTD_EGRESS_ALLOW_PRIVATE": "127.0.0.1/32",
        "AGENTD_MCP_CALL_TIMEOUT_SECS": "3",
        "AGENTD_MCP_MAX_RESULT_BYTES": "100000",
    }
    env.update(extra)
    return env


@pytest.fixture
def server(server_factory, fake_upstream):
    return server_factory(upstream=fake_upstream, env=agentd_env())


@pytest.fixture
def client(server):
    return server.client()


def toolset(server="tools", policy="always_allow", **extra):
    return {"type": "mcp_toolset", "mcp_server_name": server,
            "default_config": {"enabled": True, "permission_policy": {"type": policy}}, **extra}


def session_with(client, servers, tools, token=TOKEN, **env):
    """An agent with `servers` and `tools`, and a session whose vault holds `token` for every
    server's URL."""
    a = client.beta.agents.create(name="mcp", model=CLAUDE, mcp_servers=servers, tools=tools)
    return client.beta.sessions.create(agent=a.id, environment_id=make_env(client, **env).id,
                                       vault_ids=[vault_for(client, [s["url"] for s in servers], token)])


def vault_for(client, urls, token=TOKEN) -> str:
    """A vault holding `token` as the static bearer credential of each MCP server URL."""
    v = client.beta.vaults.create(display_name="mcp")
    for url in urls:
        client.beta.vaults.credentials.create(
            v.id, auth={"type": "static_bearer", "token": token, "mcp_server_url": url})
    return v.id


def url_server(name, url):
    return {"type": "url", "name": name, "url": url}


def rested(reason):
    return lambda evs: bool(evs) and evs[-1]["type"] == "session.status_idle" \
        and evs[-1]["stop_reason"]["type"] == reason


def of(evs, t):
    return [e for e in evs if e["type"] == t]


def text_of(e) -> str:
    return "".join(b.get("text", "") for b in e.get("content") or [])


def test_tools_are_listed_offered_called_and_answered(server, client, fake_upstream, mcp):
    a = client.beta.agents.create(name="mcp", model=CLAUDE, mcp_servers=[url_server("tools", mcp.url)],
                                  tools=[toolset()])
    raw = client.beta.agents.with_raw_response.retrieve(a.id).json()
    validate_model(anthropic.types.beta.BetaManagedAgentsAgent, raw)
    assert raw["mcp_servers"] == [{"type": "url", "name": "tools", "url": mcp.url}]
    assert raw["tools"][0] == {"type": "mcp_toolset", "mcp_server_name": "tools", "configs": [],
                               "default_config": {"enabled": True,
                                                  "permission_policy": {"type": "always_allow"}}}
    s = client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id,
                                    vault_ids=[vault_for(client, [mcp.url])])
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__tools__echo", {"text": "hello mcp"})),
                          fa.reply_text("done"))
    send_text(client, s.id, "echo something")
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    for e in evs:
        validate_event(e)
    use = of(evs, "agent.mcp_tool_use")
    res = of(evs, "agent.mcp_tool_result")
    assert len(use) == 1 and len(res) == 1
    assert use[0]["name"] == "echo" and use[0]["mcp_server_name"] == "tools"
    assert use[0]["input"] == {"text": "hello mcp"} and use[0]["evaluated_permission"] == "allow"
    assert res[0]["mcp_tool_use_id"] == use[0]["id"] and res[0]["is_error"] is False
    assert text_of(res[0]) == "echo: hello mcp"
    assert not of(evs, "agent.tool_use") and not of(evs, "session.error")
    # the use is logged before the result
    assert evs.index(use[0]) < evs.index(res[0])

    # the model was offered the server's tools, under their MCP names
    reqs = fake_upstream.messages_requests()
    offered = {t["name"]: t for t in reqs[0].body["tools"]}
    assert {"mcp__tools__echo", "mcp__tools__slow", "mcp__tools__huge", "mcp__tools__fail"} <= set(offered)
    assert offered["mcp__tools__echo"]["description"] == "Echo the text back."
    assert "text" in offered["mcp__tools__echo"]["input_schema"]["properties"]
    # and read the result as the answer to its call
    tr = reqs[1].blocks("tool_result")
    assert len(tr) == 1 and "echo: hello mcp" in json.dumps(tr[0])
    assert reqs[1].blocks("tool_use")[0]["name"] == "mcp__tools__echo"

    # the server saw one call, every request with the bearer token
    assert [c["text"] for c in mcp.calls("echo")] == ["hello mcp"]
    auths = [r["authorization"] for r in mcp.seen() if "authorization" in r]
    assert auths and all(h == f"Bearer {TOKEN}" for h in auths)
    # a second turn uses the session's connection: the tools were listed once
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__tools__echo", {"text": "again"})),
                          fa.reply_text("done again"))
    send_text(client, s.id, "once more")
    wait_events(client, s.id, lambda e: len(of(e, "agent.mcp_tool_result")) == 2 and rested("end_turn")(e),
                timeout=30)
    assert mcp.methods().count("initialize") == 1 and mcp.methods().count("tools/list") == 1, mcp.methods()
    assert mcp.methods().count("tools/call") == 2
    # the token reached neither the log, the model nor agentd's own log
    assert TOKEN not in json.dumps(list_raw_events(client, s.id))
    assert all(TOKEN not in r.text for r in reqs)
    assert TOKEN not in server.log()


def test_always_ask_waits_for_confirmation_and_a_denial_never_reaches_the_server(client, fake_upstream, mcp):
    s = session_with(client, [url_server("tools", mcp.url)],
                     [toolset(policy="always_ask", configs=[{"name": "fail", "enabled": False}])])
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__tools__echo", {"text": "asked"})))
    send_text(client, s.id, "go")
    evs = wait_events(client, s.id, rested("requires_action"), timeout=30)
    use = of(evs, "agent.mcp_tool_use")[0]
    assert use["evaluated_permission"] == "ask"
    assert evs[-1]["stop_reason"]["event_ids"] == [use["id"]]
    assert not mcp.calls("echo"), "an always_ask call must wait for the user"
    # a disabled tool is not offered
    assert "mcp__tools__fail" not in {t["name"] for t in fake_upstream.messages_requests()[0].body["tools"]}

    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__tools__echo", {"text": "denied"})))
    client.beta.sessions.events.send(s.id, events=[
        {"type": "user.tool_confirmation", "tool_use_id": use["id"], "result": "allow"}])
    evs = wait_events(client, s.id, lambda e: len(of(e, "agent.mcp_tool_use")) == 2 and rested("requires_action")(e),
                      timeout=30)
    res = of(evs, "agent.mcp_tool_result")
    assert len(res) == 1 and res[0]["mcp_tool_use_id"] == use["id"] and text_of(res[0]) == "echo: asked"
    second = of(evs, "agent.mcp_tool_use")[1]

    fake_upstream.enqueue(fa.reply_text("ok"))
    client.beta.sessions.events.send(s.id, events=[
        {"type": "user.tool_confirmation", "tool_use_id": second["id"], "result": "deny",
         "deny_message": "not that one"}])
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    for e in evs:
        validate_event(e)
    denied = [r for r in of(evs, "agent.mcp_tool_result") if r["mcp_tool_use_id"] == second["id"]][0]
    assert denied["is_error"] is True and "not that one" in text_of(denied)
    assert [c["text"] for c in mcp.calls("echo")] == ["asked"]


def test_slow_huge_and_failing_tools_are_clear_errors_and_the_session_goes_on(client, fake_upstream, mcp):
    s = session_with(client, [url_server("tools", mcp.url)], [toolset()])
    fake_upstream.enqueue(
        fa.message(fa.tool_use("mcp__tools__slow", {"seconds": 20, "tag": "timeout"})),
        fa.message(fa.tool_use("mcp__tools__huge", {"size": 300000})),
        fa.message(fa.tool_use("mcp__tools__fail", {"message": "the tool broke"})),
        fa.message(fa.tool_use("mcp__tools__echo", {"text": "still here"})),
        fa.reply_text("done"))
    send_text(client, s.id, "go")
    started = time.monotonic()
    evs = wait_events(client, s.id, rested("end_turn"), timeout=60)
    for e in evs:
        validate_event(e)
    res = of(evs, "agent.mcp_tool_result")
    assert len(res) == 4
    slow, huge, fail, echo = res
    assert slow["is_error"] is True and "did not answer within 3 s" in text_of(slow)
    assert huge["is_error"] is True and "over agentd's cap of 100000 bytes" in text_of(huge)
    assert fail["is_error"] is True and "the tool broke" in text_of(fail)
    assert echo["is_error"] is False and text_of(echo) == "echo: still here"
    assert time.monotonic() - started < 20, "the slow call must be cut at its timeout"


def test_a_server_that_is_down_or_malformed_is_reported_and_the_turn_goes_on(client, fake_upstream, mcp):
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        closed = sk.getsockname()[1]
    s = session_with(client, [url_server("down", f"http://127.0.0.1:{closed}/mcp"),
                              url_server("bad", mcp.malformed_url), url_server("tools", mcp.url)],
                     [toolset("down"), toolset("bad"), toolset("tools")])
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__down__anything", {})), fa.reply_text("done"))
    send_text(client, s.id, "go")
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    for e in evs:
        validate_event(e)
    errors = {e["error"]["mcp_server_name"]: e["error"] for e in of(evs, "session.error")}
    assert set(errors) == {"down", "bad"}
    assert all(e["type"] == "mcp_connection_failed_error" for e in errors.values())
    assert "could not reach" in errors["down"]["message"]
    assert mcp.calls("malformed"), "the malformed server was asked"
    # the reachable server's tools were still offered, the others' not
    names = {t["name"] for t in fake_upstream.messages_requests()[0].body["tools"]}
    assert "mcp__tools__echo" in names and not any(n.startswith(("mcp__down__", "mcp__bad__")) for n in names)
    # a call to a tool that was not offered is refused, not sent anywhere
    tu = of(evs, "agent.tool_use")
    assert len(tu) == 1 and tu[0]["evaluated_permission"] == "deny"


def test_a_malformed_answer_to_a_call_is_a_clear_tool_error(client, fake_upstream, mcp):
    s = session_with(client, [url_server("broken", mcp.broken_url), url_server("tools", mcp.url)],
                     [toolset("broken"), toolset("tools")])
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__broken__broken", {})),
                          fa.message(fa.tool_use("mcp__tools__echo", {"text": "after"})),
                          fa.reply_text("done"))
    send_text(client, s.id, "go")
    started = time.monotonic()
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    for e in evs:
        validate_event(e)
    assert not of(evs, "session.error")
    broken, echo = of(evs, "agent.mcp_tool_result")
    assert broken["is_error"] is True and "broken" in text_of(broken), text_of(broken)
    assert echo["is_error"] is False and text_of(echo) == "echo: after"
    assert len(mcp.calls("broken")) == 1
    print("malformed answer:", text_of(broken), "after", round(time.monotonic() - started, 1), "s")


def test_a_call_cut_by_a_crash_is_answered_interrupted_and_never_sent_again(server, client, fake_upstream, mcp):
    s = session_with(client, [url_server("tools", mcp.url)], [toolset()])
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__tools__slow", {"seconds": 2, "tag": "crash"})),
                          fa.reply_text("after the crash"))
    send_text(client, s.id, "go")
    wait_until(lambda: mcp.calls("slow"), timeout=30, what="the slow call to reach the server")
    server.kill()
    server.restart()
    c = server.client()
    evs = wait_events(c, s.id, rested("end_turn"), timeout=30)
    for e in evs:
        validate_event(e)
    res = of(evs, "agent.mcp_tool_result")
    assert len(res) == 1 and res[0]["is_error"] is True and "interrupted" in text_of(res[0])
    time.sleep(2.5)  # longer than the call: a second one would have been recorded by now
    assert len(mcp.calls("slow")) == 1
    assert mcp.methods().count("tools/call") == 1
    # memory held the tool list, not the log: the restarted process listed the tools again
    assert mcp.methods().count("tools/list") == 2, mcp.methods()


def test_agent_fields_are_validated_and_a_forbidden_host_is_refused(client, fake_upstream, mcp):
    def refused(field, **kw):
        with pytest.raises(anthropic.BadRequestError) as e:
            client.beta.agents.create(name="bad", model=CLAUDE, **kw)
        assert field in str(e.value), str(e.value)

    refused("tools[0].mcp_server_name", mcp_servers=[url_server("tools", mcp.url)], tools=[toolset("other")])
    refused("mcp_servers[1].name", mcp_servers=[url_server("tools", mcp.url), url_server("tools", mcp.url)])
    refused("mcp_servers[0].url", mcp_servers=[url_server("tools", "ftp://example.com/mcp")])
    refused("tools[1].mcp_server_name", mcp_servers=[url_server("tools", mcp.url)], tools=[toolset(), toolset()])

    a = client.beta.agents.create(name="mcp", model=CLAUDE, mcp_servers=[url_server("tools", mcp.url)],
                                  tools=[toolset()])
    closed = make_env(client, config={"type": "cloud", "networking": {"type": "limited", "allowed_hosts": []}})
    with pytest.raises(anthropic.BadRequestError) as e:
        client.beta.sessions.create(agent=a.id, environment_id=closed.id)
    assert "agent.mcp_servers[0].url" in str(e.value) and "allow_mcp_servers" in str(e.value)
    assert not mcp.calls("echo") and not [r for r in mcp.seen() if "authorization" in r]

    # allow_mcp_servers opens exactly the agent's servers
    s = session_with(client, [url_server("tools", mcp.url)], [toolset()],
                     config={"type": "cloud", "networking": {"type": "limited", "allow_mcp_servers": True}})
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__tools__echo", {"text": "allowed"})), fa.reply_text("ok"))
    send_text(client, s.id, "go")
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    assert text_of(of(evs, "agent.mcp_tool_result")[0]) == "echo: allowed"


def test_loopback_is_never_reached_unless_the_operator_opens_it(server_factory, fake_upstream, mcp):
    env = agentd_env()
    del env["AGENTD_EGRESS_ALLOW_PRIVATE"]
    srv = server_factory(upstream=fake_upstream, env=env)
    client = srv.client()
    s = session_with(client, [url_server("tools", mcp.url)], [toolset()])
    fake_upstream.enqueue(fa.reply_text("no tools"))
    send_text(client, s.id, "go")
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    err = of(evs, "session.error")
    assert len(err) == 1 and err[0]["error"]["type"] == "mcp_connection_failed_error"
    assert "127.0.0.1" in err[0]["error"]["message"] and "may not be reached" in err[0]["error"]["message"]
    assert mcp.seen() == [], "a refused host must not be connected to at all"


def test_a_refused_credential_is_an_authentication_error(server_factory, fake_upstream, mcp):
    srv = server_factory(upstream=fake_upstream, env=agentd_env())
    client = srv.client()
    s = session_with(client, [url_server("tools", mcp.url)], [toolset()], token="wrong-token")
    fake_upstream.enqueue(fa.reply_text("no tools"))
    send_text(client, s.id, "go")
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    for e in evs:
        validate_event(e)
    err = of(evs, "session.error")
    assert len(err) == 1 and err[0]["error"]["type"] == "mcp_authentication_failed_error", err
    assert err[0]["error"]["mcp_server_name"] == "tools"
    auths = [r["authorization"] for r in mcp.seen() if "authorization" in r]
    # the credential is asked for again after the 401, once, then the server is given up on
    assert auths == ["Bearer wrong-token", "Bearer wrong-token"], auths
    assert not mcp.calls("echo")


def test_a_custom_tool_keeps_its_name_over_an_mcp_tool(client, fake_upstream, mcp):
    custom = {"type": "custom", "name": "mcp__tools__echo", "description": "mine",
              "input_schema": {"type": "object", "properties": {}}}
    s = session_with(client, [url_server("tools", mcp.url)], [toolset(), custom])
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__tools__echo", {"text": "x"})))
    send_text(client, s.id, "go")
    evs = wait_events(client, s.id, rested("requires_action"), timeout=30)
    names = [t["name"] for t in fake_upstream.messages_requests()[0].body["tools"]]
    assert names.count("mcp__tools__echo") == 1 and "mcp__tools__slow" in names
    assert [e["type"] for e in evs if e["type"].endswith("tool_use")] == ["agent.custom_tool_use"]
    assert not mcp.calls("echo")


def test_a_result_past_the_transport_bound_and_a_server_gone_mid_session_are_tool_errors(
        client, fake_upstream, mcp):
    s = session_with(client, [url_server("tools", mcp.url)], [toolset()])
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__tools__huge", {"size": 20_000_000})),
                          fa.reply_text("first done"))
    send_text(client, s.id, "go")
    evs = wait_events(client, s.id, rested("end_turn"), timeout=60)
    huge = of(evs, "agent.mcp_tool_result")[0]
    assert huge["is_error"] is True
    assert "over agentd's cap" in text_of(huge) or "did not answer within" in text_of(huge), text_of(huge)
    assert len(json.dumps(huge)) < 5000, "none of the huge body reaches the log"

    mcp.close()
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__tools__echo", {"text": "anyone?"})),
                          fa.reply_text("second done"))
    send_text(client, s.id, "again")
    evs = wait_events(client, s.id, lambda e: idle_count(e) == 2 and rested("end_turn")(e), timeout=60)
    for e in evs:
        validate_event(e)
    gone = of(evs, "agent.mcp_tool_result")[1]
    assert gone["is_error"] is True and "tools" in text_of(gone), text_of(gone)
    print("huge:", text_of(huge)[:200], "| gone:", text_of(gone)[:300])


def test_an_interrupt_abandons_a_running_call(client, fake_upstream, mcp):
    s = session_with(client, [url_server("tools", mcp.url)], [toolset()])
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__tools__slow", {"seconds": 20, "tag": "cut"})))
    send_text(client, s.id, "go")
    wait_until(lambda: mcp.calls("slow"), timeout=30, what="the slow call to reach the server")
    client.beta.sessions.events.send(s.id, events=[{"type": "user.interrupt"}])
    evs = wait_events(client, s.id, lambda e: bool(of(e, "agent.mcp_tool_result")) and rested("end_turn")(e),
                      timeout=10)
    for e in evs:
        validate_event(e)
    res = of(evs, "agent.mcp_tool_result")[0]
    assert res["is_error"] is True and "Interrupted by the user" in text_of(res)
    assert len(mcp.calls("slow")) == 1 and not mcp.calls("slow_done")


def test_a_worker_thread_calls_mcp_tools_and_its_ask_is_answered_on_the_session(
        client, scripts_dir, mcp):
    from conftest import all_pages, write_script
    worker_model = write_script(scripts_dir, "mcp_worker", json.dumps({"turns": [
        {"tool_use": {"name": "mcp__tools__echo", "input": {"text": "from the worker"}}},
        {"text": "worker done"},
    ]}))
    worker = client.beta.agents.create(name="fetcher", model=worker_model,
                                       mcp_servers=[url_server("tools", mcp.url)],
                                       tools=[toolset(policy="always_ask")])
    coord_model = write_script(scripts_dir, "mcp_coordinator", json.dumps({"turns": [
        {"tool_use": {"name": "start_thread", "input": {"agent": "fetcher", "message": "fetch"}}},
        {"text": "Waiting."},
        {"echo": True},
    ]}))
    coord = client.beta.agents.create(name="coordinator", model=coord_model,
                                      multiagent={"type": "coordinator", "agents": [worker.id]})
    s = client.beta.sessions.create(agent=coord.id, environment_id=make_env(client).id,
                                    vault_ids=[vault_for(client, [mcp.url])])
    send_text(client, s.id, "go")
    evs = wait_events(client, s.id, lambda e: bool(of(e, "agent.mcp_tool_use")), timeout=30)
    ask = of(evs, "agent.mcp_tool_use")[0]
    assert ask["session_thread_id"].startswith("sthr_") and ask["evaluated_permission"] == "ask"
    assert not mcp.calls("echo")
    client.beta.sessions.events.send(s.id, events=[
        {"type": "user.tool_confirmation", "tool_use_id": ask["id"], "result": "allow"}])
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    for e in evs:
        validate_event(e)
    assert "worker done" in text_of(of(evs, "agent.message")[-1])
    thread = all_pages(client.beta.sessions.threads.events.with_raw_response.list, ask["session_thread_id"],
                       session_id=s.id, limit=1000)
    res = of(thread, "agent.mcp_tool_result")
    assert len(res) == 1 and text_of(res[0]) == "echo: from the worker"
    assert [c["text"] for c in mcp.calls("echo")] == ["from the worker"]


def test_archiving_a_session_closes_its_mcp_connection(client, fake_upstream, mcp):
    s = session_with(client, [url_server("tools", mcp.url)], [toolset()])
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__tools__echo", {"text": "x"})), fa.reply_text("ok"))
    send_text(client, s.id, "go")
    wait_events(client, s.id, rested("end_turn"), timeout=30)
    assert not [r for r in mcp.seen() if r.get("http") == "DELETE"]
    client.beta.sessions.archive(s.id)
    # the MCP session is ended on the server (HTTP DELETE), not left to time out there
    wait_until(lambda: [r for r in mcp.seen() if r.get("http") == "DELETE"], timeout=10,
               what="the MCP session to be closed")


class TokenEndpoint:
    """An OAuth token endpoint on loopback: swaps refresh token `r1` for TOKEN (the MCP server's)
    and a new refresh token; anything else is a 400 `invalid_grant`."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs
        outer = self
        self.forms: list = []

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(n).decode()).items()}
                outer.forms.append(form)
                if form.get("grant_type") == "refresh_token" and form.get("refresh_token") == "r1":
                    body, status = {"access_token": TOKEN, "refresh_token": "r2", "expires_in": 3600,
                                    "token_type": "Bearer"}, 200
                else:
                    body, status = {"error": "invalid_grant"}, 400
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


def oauth_session(client, mcp, access: str, refresh: str, expires_in: int):
    from datetime import datetime, timedelta, timezone
    token = TokenEndpoint()
    a = client.beta.agents.create(name="mcp", model=CLAUDE, mcp_servers=[url_server("tools", mcp.url)],
                                  tools=[toolset()])
    v = client.beta.vaults.create(display_name="oauth")
    c = client.beta.vaults.credentials.create(v.id, auth={
        "type": "mcp_oauth", "mcp_server_url": mcp.url, "access_token": access,
        "expires_at": (datetime.now(timezone.utc) + timedelta(seconds=expires_in)).isoformat(),
        "refresh": {"client_id": "agentd-e2e", "refresh_token": refresh, "token_endpoint": token.url,
                    "token_endpoint_auth": {"type": "none"}}})
    s = client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id, vault_ids=[v.id])
    return s, token, v, c


@pytest.mark.parametrize("how", ["refused", "expired"])
def test_an_oauth_token_is_refreshed_at_the_edge_and_the_call_goes_through(client, fake_upstream, mcp, how):
    # "refused": the stored token looks valid but the server refuses it (401), so agentd refreshes
    # once and asks again; "expired": its expiry has passed, so agentd refreshes before asking.
    # (agentd refreshes a token due within a minute before it is sent)
    access, expires_in = ("revoked-token", 3600) if how == "refused" else ("old-token", 30)
    s, token, v, c = oauth_session(client, mcp, access, "r1", expires_in)
    try:
        fake_upstream.enqueue(fa.message(fa.tool_use("mcp__tools__echo", {"text": "hi"})), fa.reply_text("done"))
        send_text(client, s.id, "go")
        evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
        results = of(evs, "agent.mcp_tool_result")
        assert len(results) == 1 and not results[0].get("is_error"), results
        assert [f["refresh_token"] for f in token.forms] == ["r1"], "one refresh"
        auths = [r["authorization"] for r in mcp.seen() if "authorization" in r]
        assert auths[-1] == f"Bearer {TOKEN}"
        if how == "refused":
            assert auths[0] == "Bearer revoked-token"
        else:
            assert "Bearer old-token" not in auths, "an expired token is never sent"
        # The rotated tokens are stored (sealed): the credential's public face shows the new expiry.
        assert client.beta.vaults.credentials.retrieve(c.id, vault_id=v.id).auth.expires_at is not None
        for e in list_raw_events(client, s.id):
            assert TOKEN not in json.dumps(e)
        for r in fake_upstream.messages_requests():
            assert TOKEN not in json.dumps(r.body)
    finally:
        token.close()


def test_a_failed_refresh_is_a_session_error_and_the_turn_goes_on(client, fake_upstream, mcp):
    s, token, v, c = oauth_session(client, mcp, "revoked-token", "not-the-refresh-token", 3600)
    try:
        fake_upstream.enqueue(fa.reply_text("carried on"))
        send_text(client, s.id, "go")
        evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
        err = of(evs, "session.error")
        assert len(err) == 1 and err[0]["error"]["type"] == "mcp_authentication_failed_error", err
        assert "refreshing the OAuth token" in err[0]["error"]["message"]
        assert "not-the-refresh-token" not in json.dumps(err)
        assert not mcp.calls("echo")
        # The model was still called, without the server's tools.
        assert "mcp__tools__echo" not in json.dumps(fake_upstream.messages_requests()[-1].body)
    finally:
        token.close()


def test_a_system_proxy_is_never_used_for_mcp_servers(server_factory, fake_upstream, mcp):
    # A proxy would make the address checks judge the proxy, not the server: agentd ignores it.
    # (The model upstream, on 127.0.0.1, is exempt; the MCP server is reached as localhost.)
    dead = "http://127.0.0.1:9"
    srv = server_factory(upstream=fake_upstream,
                         env=agentd_env(HTTP_PROXY=dead, http_proxy=dead, NO_PROXY="127.0.0.1",
                                        no_proxy="127.0.0.1"))
    client = srv.client()
    url = mcp.url.replace("127.0.0.1", "localhost")
    s = session_with(client, [url_server("tools", url)], [toolset()])
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__tools__echo", {"text": "direct"})), fa.reply_text("done"))
    send_text(client, s.id, "go")
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    results = of(evs, "agent.mcp_tool_result")
    assert len(results) == 1 and not results[0].get("is_error"), results
    assert mcp.calls("echo")


def test_a_server_of_the_older_sse_transport_is_spoken_to_over_sse(server, client, fake_upstream, mcp):
    s = session_with(client, [url_server("old", mcp.sse_url)], [toolset("old")])
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__old__echo", {"text": "over sse"})), fa.reply_text("done"))
    send_text(client, s.id, "call it")
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    (result,) = of(evs, "agent.mcp_tool_result")
    assert "echo: over sse" in text_of(result) and not result.get("is_error"), result
    assert mcp.calls("echo") == [{"call": "echo", "text": "over sse"}]
    # The credential went with every request of the SSE transport, the stream and the POSTs.
    legacy = [r for r in mcp.seen() if r.get("path", "").startswith("/legacy")]
    assert {r["http"] for r in legacy} >= {"GET", "POST"}
    assert all(r["authorization"] == f"Bearer {TOKEN}" for r in legacy), legacy


def test_a_tool_list_without_end_is_refused_and_the_turn_goes_on(client, fake_upstream, mcp):
    s = session_with(client, [url_server("many", mcp.many_url)], [toolset("many")])
    fake_upstream.enqueue(fa.reply_text("done"))
    send_text(client, s.id, "go")
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    (err,) = of(evs, "session.error")
    assert err["error"]["type"] == "mcp_connection_failed_error"
    assert "more than 512 tools" in err["error"]["message"], err
    assert len(mcp.calls("many")) <= 7, "listing stopped at the cap"


def test_auto_mcp_calls_are_judged_before_they_are_sent(client, fake_upstream, mcp):
    s = session_with(client, [url_server("tools", mcp.url)], [toolset(policy="auto")])
    fake_upstream.enqueue(fa.message(fa.tool_use("mcp__tools__echo", {"text": "judged"})), fa.reply_text("ALLOW"),
                          fa.message(fa.tool_use("mcp__tools__fail", {"message": "x"})), fa.reply_text("DENY"),
                          fa.reply_text("done"))
    send_text(client, s.id, "echo something")
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    uses = of(evs, "agent.mcp_tool_use")
    assert [u["evaluated_permission"] for u in uses] == ["allow", "deny"]
    assert mcp.calls("echo") == [{"call": "echo", "text": "judged"}]
    assert mcp.calls("fail") == [], "a denied call is never sent"
