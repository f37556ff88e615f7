"""Built-in tools (agent_toolset_20260401) run by agentd in its sandbox: agent.tool_use with its
evaluated permission, user.tool_confirmation for `always_ask`, agent.tool_result, and the
result reaching the model. Every event is validated strictly against the SDK's types."""

import json

import anthropic
import pytest

import fake_anthropic as fa
from conftest import list_raw_events, make_env, send_text, types_of, validate_event, wait_events

CLAUDE = "claude-sonnet-4-6"


def toolset(policy="always_allow", **extra):
    return {"type": "agent_toolset_20260401",
            "default_config": {"enabled": True, "permission_policy": {"type": policy}}, **extra}


def session_with(client, tools):
    a = client.beta.agents.create(name="builtin", model=CLAUDE, tools=tools)
    return client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)


def rested(reason):
    return lambda evs: bool(evs) and evs[-1]["type"] == "session.status_idle" \
        and evs[-1]["stop_reason"]["type"] == reason


def test_allowed_tools_run_in_the_sandbox_and_feed_the_model(client, fake_upstream):
    s = session_with(client, [toolset("always_allow")])
    fake_upstream.enqueue(
        fa.message(fa.tool_use("write", {"file_path": "notes/a.txt", "content": "sandboxed 42\n"})),
        fa.message(fa.tool_use("bash", {"command": "cat notes/a.txt; echo done-$((6*7))"})),
        fa.reply_text("all done"),
    )
    send_text(client, s.id, "write then read")
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    for e in evs:
        validate_event(e)
    uses = [e for e in evs if e["type"] == "agent.tool_use"]
    results = [e for e in evs if e["type"] == "agent.tool_result"]
    assert [u["name"] for u in uses] == ["write", "bash"]
    assert all(u["evaluated_permission"] == "allow" for u in uses)
    assert [r["tool_use_id"] for r in results] == [u["id"] for u in uses]
    assert not results[1].get("is_error")
    out = "".join(b["text"] for b in results[1]["content"])
    assert "sandboxed 42" in out and "done-42" in out
    assert "session.status_idle" not in types_of(evs)[:-1], "an allowed call must not wait for the user"

    # the model got the tool's output as a tool_result for its tool_use
    r3 = fake_upstream.messages_requests()[2]
    tr = r3.blocks("tool_result")
    assert len(tr) == 2
    assert "done-42" in "".join(b.get("text", "") for b in tr[1]["content"])
    assert {b["id"] for b in r3.blocks("tool_use")} == {b["tool_use_id"] for b in tr}
    # and the tools were offered to the model
    assert {"bash", "read", "write"} <= {t["name"] for t in fake_upstream.messages_requests()[0].body["tools"]}


def test_always_ask_waits_for_a_confirmation(client, fake_upstream):
    s = session_with(client, [toolset("always_allow", configs=[
        {"name": "bash", "permission_policy": {"type": "always_ask"}}])])
    fake_upstream.enqueue(
        fa.message(fa.tool_use("bash", {"command": "echo confirmed-run"})),
        fa.reply_text("ran it"),
    )
    send_text(client, s.id, "run something")
    evs = wait_events(client, s.id, rested("requires_action"), timeout=20)
    use = [e for e in evs if e["type"] == "agent.tool_use"][0]
    assert use["evaluated_permission"] == "ask"
    assert evs[-1]["stop_reason"]["event_ids"] == [use["id"]]
    assert "agent.tool_result" not in types_of(evs)
    assert len(fake_upstream.messages_requests()) == 1

    sent = client.beta.sessions.events.send(s.id, events=[{
        "type": "user.tool_confirmation", "tool_use_id": use["id"], "result": "allow"}])
    assert sent.data[0].type == "user.tool_confirmation"
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    for e in evs:
        validate_event(e)
    conf = [e for e in evs if e["type"] == "user.tool_confirmation"][0]
    assert conf["tool_use_id"] == use["id"] and conf["result"] == "allow"
    res = [e for e in evs if e["type"] == "agent.tool_result"][0]
    assert res["tool_use_id"] == use["id"]
    assert "confirmed-run" in "".join(b["text"] for b in res["content"])
    assert [m["content"][0]["text"] for m in evs if m["type"] == "agent.message"] == ["ran it"]


def test_a_denied_call_never_runs(client, fake_upstream):
    s = session_with(client, [toolset("always_ask")])
    fake_upstream.enqueue(
        fa.message(fa.tool_use("write", {"file_path": "should-not-exist.txt", "content": "x"})),
        fa.message(fa.tool_use("bash", {"command": "ls should-not-exist.txt 2>&1 || echo absent"})),
        fa.reply_text("ok"),
    )
    send_text(client, s.id, "write a file")
    evs = wait_events(client, s.id, rested("requires_action"), timeout=20)
    use = [e for e in evs if e["type"] == "agent.tool_use"][0]
    client.beta.sessions.events.send(s.id, events=[{
        "type": "user.tool_confirmation", "tool_use_id": use["id"], "result": "deny",
        "deny_message": "not in my home directory"}])
    # the model hears the denial, then asks to run ls, which is also ask
    evs = wait_events(client, s.id, lambda e: rested("requires_action")(e) and
                      sum(1 for x in e if x["type"] == "agent.tool_use") == 2, timeout=20)
    r2 = fake_upstream.messages_requests()[1]
    denial = r2.blocks("tool_result")[0]
    assert denial["is_error"] is True
    assert "not in my home directory" in "".join(b.get("text", "") for b in denial["content"])
    ls = [e for e in evs if e["type"] == "agent.tool_use"][1]
    client.beta.sessions.events.send(s.id, events=[{
        "type": "user.tool_confirmation", "tool_use_id": ls["id"], "result": "allow"}])
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    for e in evs:
        validate_event(e)
    out = [e for e in evs if e["type"] == "agent.tool_result" and e["tool_use_id"] == ls["id"]][0]
    assert "absent" in "".join(b["text"] for b in out["content"])


def test_confirmations_are_checked(client, fake_upstream):
    s = session_with(client, [toolset("always_ask")])
    fake_upstream.enqueue(fa.message(fa.tool_use("bash", {"command": "true"})), fa.reply_text("ok"))
    send_text(client, s.id, "x")
    evs = wait_events(client, s.id, rested("requires_action"), timeout=20)
    use = [e for e in evs if e["type"] == "agent.tool_use"][0]
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(s.id, events=[{
            "type": "user.tool_confirmation", "tool_use_id": use["id"], "result": "maybe"}])
    assert "events[0].result" in ei.value.message
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(s.id, events=[{
            "type": "user.custom_tool_result", "custom_tool_use_id": use["id"]}])
    assert "custom_tool_use_id" in ei.value.message
    assert types_of(list_raw_events(client, s.id))[-1] == "session.status_idle"


def test_reading_an_image_shows_it_to_the_model(client, fake_upstream):
    s = session_with(client, [toolset("always_allow")])
    png = "89504e470d0a1a0a0000000d49484452"
    fake_upstream.enqueue(
        fa.message(fa.tool_use("bash", {"command": f"printf '%s' {png} | xxd -r -p > dot.png 2>/dev/null || python3 -c \"open('dot.png','wb').write(bytes.fromhex('{png}'))\""})),
        fa.message(fa.tool_use("read", {"file_path": "dot.png"})),
        fa.reply_text("a tiny image"),
    )
    send_text(client, s.id, "look at it")
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    for e in evs:
        validate_event(e)
    result = [e for e in evs if e["type"] == "agent.tool_result"][1]
    image = next(b for b in result["content"] if b["type"] == "image")
    assert image["source"]["media_type"] == "image/png"
    assert image["source"]["data"] == "iVBORw0KGgoAAAANSUhEUg=="
    # the model received it inside the tool result
    tr = fake_upstream.messages_requests()[2].blocks("tool_result")[1]
    assert any(b.get("type") == "image" for b in tr["content"])


def test_auto_calls_are_judged_by_the_model_before_they_are_logged(client, fake_upstream):
    """`auto`: the agent's model judges each call from the tool, its input and the user's request;
    ALLOW runs it, DENY refuses it (the model hears why), anything else asks the user."""
    s = session_with(client, [toolset("auto")])
    fake_upstream.enqueue(
        fa.message(fa.tool_use("bash", {"command": "echo judged-safe > safe.txt; cat safe.txt"})),
        fa.reply_text("ALLOW"),
        fa.message(fa.tool_use("bash", {"command": "rm -rf / --no-preserve-root"})),
        fa.reply_text("DENY"),
        fa.message(fa.tool_use("bash", {"command": "echo after-asking"})),
        fa.reply_text("I am not sure."),
    )
    send_text(client, s.id, "tidy up my workspace")
    evs = wait_events(client, s.id, rested("requires_action"), timeout=30)
    for e in evs:
        validate_event(e)
    uses = [e for e in evs if e["type"] == "agent.tool_use"]
    assert [u["evaluated_permission"] for u in uses] == ["allow", "deny", "ask"]
    results = [e for e in evs if e["type"] == "agent.tool_result"]
    assert "judged-safe" in "".join(b["text"] for b in results[0]["content"])
    assert results[1]["is_error"] is True
    assert evs[-1]["stop_reason"]["event_ids"] == [uses[2]["id"]]

    # The judge saw the tool, its input and the user's request, with no tools of its own.
    judge = fake_upstream.messages_requests()[1].body
    assert "review the tool calls" in str(judge["system"]) and not judge.get("tools")
    asked = json.dumps(judge["messages"])
    assert "tidy up my workspace" in asked and "judged-safe" in asked and "bash" in asked

    fake_upstream.enqueue(fa.reply_text("done"))
    client.beta.sessions.events.send(s.id, events=[{
        "type": "user.tool_confirmation", "tool_use_id": uses[2]["id"], "result": "allow"}])
    evs = wait_events(client, s.id, rested("end_turn"), timeout=30)
    last = [e for e in evs if e["type"] == "agent.tool_result"][-1]
    assert "after-asking" in "".join(b["text"] for b in last["content"])
    # An agent keeps `auto` as written.
    a = client.beta.agents.retrieve(client.beta.sessions.retrieve(s.id).agent.id)
    assert a.tools[0].default_config.permission_policy.type == "auto"
