"""Self-hosted environments: the work queue (poll, ack, heartbeat, stop, update, list,
retrieve, stats) with the credential each endpoint takes, and the SDK's own environment worker,
unchanged, serving a session's tools as `user.tool_result` events, including a worker killed
mid-tool whose item another worker takes over."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import pytest

import fake_anthropic as fa
from conftest import list_raw_events, send_text, types_of, validate_event, wait_events, wait_until

CLAUDE = "claude-sonnet-4-6"
WORKER = Path(__file__).with_name("sdk_worker.py")


def env_key(server, env_id: str) -> str:
    r = subprocess.run(
        [str(server.binary), "environments", "keys", "create", env_id, "--data-dir", str(server.data_dir)],
        env=server.env, capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def self_hosted_session(client):
    env = client.beta.environments.create(name="mine", config={"type": "self_hosted"})
    agent = client.beta.agents.create(name="hands", model=CLAUDE, tools=[{
        "type": "agent_toolset_20260401",
        "default_config": {"enabled": True, "permission_policy": {"type": "always_allow"}}}])
    s = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    return env, s


def worker_client(server, key):
    return anthropic.Anthropic(base_url=server.url, auth_token=key, api_key=None, max_retries=0)


def ended(evs):
    return bool(evs) and evs[-1]["type"] == "session.status_idle" and evs[-1]["stop_reason"]["type"] == "end_turn"


def test_work_queue_endpoints_and_who_may_call_them(server, client, fake_upstream):
    env, s = self_hosted_session(client)
    key = env_key(server, env.id)
    w = worker_client(server, key)
    assert w.beta.environments.work.poll(env.id) is None, "no tool call yet, so no work"
    fake_upstream.enqueue(fa.message(fa.tool_use("bash", {"command": "echo hi"})), fa.reply_text("done"))
    send_text(client, s.id, "run it")
    item = wait_until(lambda: w.beta.environments.work.poll(env.id, block_ms=500), timeout=15, what="a work item")
    assert item.data.id == s.id and item.state == "queued" and item.secret
    # the session went on without a worker: the call is open, the session still running
    evs = list_raw_events(client, s.id)
    assert "agent.tool_use" in types_of(evs) and "agent.tool_result" not in types_of(evs)
    # a second poll within the reclaim window gets nothing
    assert w.beta.environments.work.poll(env.id) is None
    stats = client.beta.environments.work.stats(env.id)
    assert (stats.depth, stats.pending) == (0, 1)

    # credentials: the operator's key cannot poll or list; the worker's cannot retrieve
    with pytest.raises(anthropic.PermissionDeniedError):
        client.beta.environments.work.poll(env.id)
    with pytest.raises(anthropic.PermissionDeniedError):
        client.beta.environments.work.list(env.id)
    with pytest.raises(anthropic.PermissionDeniedError):
        w.beta.environments.work.retrieve(item.id, environment_id=env.id)
    with pytest.raises(anthropic.PermissionDeniedError):
        w.beta.agents.list()
    with pytest.raises(anthropic.AuthenticationError):
        worker_client(server, "sk-agentd-env-" + "0" * 48).beta.environments.work.poll(env.id)
    with pytest.raises(anthropic.BadRequestError) as bad:
        w.beta.environments.work.poll(env.id, block_ms=1000)
    assert bad.value.body["error"]["message"].startswith("block_ms:")

    acked = w.beta.environments.work.ack(item.id, environment_id=env.id)
    assert acked.state == "starting"
    with pytest.raises(anthropic.ConflictError):
        w.beta.environments.work.ack(item.id, environment_id=env.id)
    hb = w.beta.environments.work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat="NO_HEARTBEAT")
    assert hb.lease_extended and hb.state == "active" and hb.ttl_seconds > 0
    with pytest.raises(anthropic.PreconditionFailedError) as lost:
        w.beta.environments.work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat="NO_HEARTBEAT")
    assert lost.value.body["error"]["details"]["current_state"]["last_heartbeat"] == hb.last_heartbeat
    assert lost.value.error_code == "heartbeat_precondition_failed"
    hb2 = w.beta.environments.work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat=hb.last_heartbeat,
                                             desired_ttl_seconds=120)
    assert hb2.ttl_seconds == 120 and hb2.last_heartbeat != hb.last_heartbeat

    # the operator sees and labels it; the worker lists it
    got = client.beta.environments.work.update(item.id, environment_id=env.id, metadata={"host": "laptop"})
    assert got.metadata == {"host": "laptop"} and got.secret is None
    assert [x.id for x in w.beta.environments.work.list(env.id)] == [item.id]

    # the item's secret answers the call, once
    token = __import__("anthropic.lib.environments._worker", fromlist=["x"])._sessions_token_from_secret(item.secret)
    t = worker_client(server, token)
    use = [e for e in evs if e["type"] == "agent.tool_use"][0]
    result = {"type": "user.tool_result", "tool_use_id": use["id"], "content": [{"type": "text", "text": "hi"}]}
    with pytest.raises(anthropic.PermissionDeniedError):
        t.beta.sessions.events.send(s.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "x"}]}])
    # it reads its session, and can neither change nor delete it
    assert t.beta.sessions.retrieve(s.id).id == s.id
    with pytest.raises(anthropic.PermissionDeniedError):
        t.beta.sessions.update(s.id, metadata={"owned": "yes"})
    with pytest.raises(anthropic.PermissionDeniedError):
        t.beta.sessions.delete(s.id)
    t.beta.sessions.events.send(s.id, events=[result])
    # a second answer is refused for good: a 400, which the SDK does not retry
    with pytest.raises(anthropic.BadRequestError):
        t.beta.sessions.events.send(s.id, events=[result])
    evs = wait_events(client, s.id, ended, timeout=15)
    for e in evs:
        validate_event(e)
    assert types_of(evs).count("user.tool_result") == 1
    assert fake_upstream.messages_requests()[1].blocks("tool_result")[0]["tool_use_id"] == use["id"]

    # archive reaches the worker through its heartbeat
    client.beta.sessions.archive(s.id)
    hb3 = t.beta.environments.work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat=hb2.last_heartbeat)
    assert hb3.state == "stopping" and not hb3.lease_extended
    assert t.beta.environments.work.stop(item.id, environment_id=env.id, force=True).state == "stopped"
    with pytest.raises(anthropic.ConflictError):
        client.beta.environments.work.stop(item.id, environment_id=env.id)
    # a stopped item's secret serves nothing more
    with pytest.raises(anthropic.AuthenticationError):
        t.beta.sessions.retrieve(s.id)


def claimed_call(server, client, fake_upstream, command="sleep 60"):
    """A self-hosted session whose call a worker has claimed: (env, session, worker client,
    item, the call's tool_use event, a client holding the item's secret)."""
    env, s = self_hosted_session(client)
    w = worker_client(server, env_key(server, env.id))
    fake_upstream.enqueue(fa.message(fa.tool_use("bash", {"command": command})), fa.reply_text("done"))
    send_text(client, s.id, "run it")
    item = wait_until(lambda: w.beta.environments.work.poll(env.id, block_ms=500), timeout=15, what="a work item")
    w.beta.environments.work.ack(item.id, environment_id=env.id)
    use = [e for e in list_raw_events(client, s.id) if e["type"] == "agent.tool_use"][0]
    token = __import__("anthropic.lib.environments._worker", fromlist=["x"])._sessions_token_from_secret(item.secret)
    return env, s, w, item, use, worker_client(server, token)


def closing_answer(evs, call_id):
    answers = [e for e in evs if e["type"] == "user.tool_result" and e["tool_use_id"] == call_id]
    assert len(answers) == 1, answers
    assert answers[0]["is_error"] is True
    return answers[0]


def late_result(t, s, use, refusal=anthropic.BadRequestError):
    ev = {"type": "user.tool_result", "tool_use_id": use["id"], "content": [{"type": "text", "text": "late"}]}
    with pytest.raises(refusal):
        t.beta.sessions.events.send(s.id, events=[ev])


def test_an_interrupt_closes_the_workers_open_call_in_the_same_append(server, client, fake_upstream):
    env, s, w, item, use, t = claimed_call(server, client, fake_upstream)
    client.beta.sessions.events.send(s.id, events=[{"type": "user.interrupt"}])
    # The answer lands with the interrupt: a worker reconciling right after sees it closed.
    evs = list_raw_events(client, s.id)
    kinds = types_of(evs)
    at = kinds.index("user.interrupt")
    assert evs[at + 1]["type"] == "user.tool_result" and evs[at + 1]["tool_use_id"] == use["id"], kinds
    assert "interrupted" in closing_answer(evs, use["id"])["content"][0]["text"]
    late_result(t, s, use)
    evs = wait_events(client, s.id, lambda e: e and e[-1]["type"] == "session.status_idle", timeout=15)
    assert types_of(evs).count("user.tool_result") == 1


def test_a_user_message_closes_the_workers_open_call(server, client, fake_upstream):
    env, s, w, item, use, t = claimed_call(server, client, fake_upstream)
    send_text(client, s.id, "never mind")
    evs = list_raw_events(client, s.id)
    assert "new message" in closing_answer(evs, use["id"])["content"][0]["text"]
    late_result(t, s, use)
    evs = wait_events(client, s.id, ended, timeout=15)
    # the model heard the call was closed, then the user's message
    last = fake_upstream.messages_requests()[-1]
    assert last.blocks("tool_result")[0]["tool_use_id"] == use["id"]


def test_archiving_mid_call_answers_the_call_and_queues_no_more(server, client, fake_upstream):
    env, s, w, item, use, t = claimed_call(server, client, fake_upstream)
    client.beta.sessions.archive(s.id)
    evs = list_raw_events(client, s.id)
    assert "archived" in closing_answer(evs, use["id"])["content"][0]["text"]
    hb = w.beta.environments.work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat="NO_HEARTBEAT")
    assert hb.state == "stopping" and not hb.lease_extended
    late_result(t, s, use, refusal=anthropic.ConflictError)  # an archived session takes no events
    w.beta.environments.work.stop(item.id, environment_id=env.id, force=True)
    # the session is not left running on a call no one will answer
    wait_events(client, s.id, ended, timeout=15)
    time.sleep(1)
    assert w.beta.environments.work.poll(env.id, block_ms=500) is None
    states = [x.state for x in w.beta.environments.work.list(env.id)]
    assert states == ["stopped"], states


def test_an_operators_stop_answers_the_open_call_so_no_worker_runs_it_again(server, client, fake_upstream):
    env, s, w, item, use, t = claimed_call(server, client, fake_upstream)
    assert client.beta.environments.work.stop(item.id, environment_id=env.id, force=True).state == "stopped"
    evs = list_raw_events(client, s.id)
    assert "stopped" in closing_answer(evs, use["id"])["content"][0]["text"]
    late_result(t, s, use, refusal=anthropic.AuthenticationError)  # a stopped item's secret is spent
    wait_events(client, s.id, ended, timeout=15)
    # nothing is left open, so no new item is queued for the next worker to run it again
    time.sleep(1)
    assert w.beta.environments.work.poll(env.id, block_ms=500) is None


def test_a_stopping_workers_answer_still_counts(server, client, fake_upstream):
    env, s, w, item, use, t = claimed_call(server, client, fake_upstream)
    client.beta.environments.work.stop(item.id, environment_id=env.id)  # ask, not force
    hb = w.beta.environments.work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat="NO_HEARTBEAT")
    assert hb.state == "stopping"
    ev = {"type": "user.tool_result", "tool_use_id": use["id"], "content": [{"type": "text", "text": "finished"}]}
    t.beta.sessions.events.send(s.id, events=[ev])
    w.beta.environments.work.stop(item.id, environment_id=env.id, force=True)
    evs = wait_events(client, s.id, ended, timeout=15)
    answers = [e for e in evs if e["type"] == "user.tool_result"]
    assert len(answers) == 1 and answers[0]["content"][0]["text"] == "finished"


def start_worker(server, env_id, key, workdir):
    log = open(workdir.parent / f"{workdir.name}.log", "w")
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, str(WORKER), server.url, env_id, key, str(workdir)],
                            stdout=log, stderr=subprocess.STDOUT)


def test_the_sdk_worker_serves_a_session_and_a_killed_worker_is_replaced(server_factory, fake_upstream, tmp_path):
    server = server_factory(upstream=fake_upstream, env={"AGENTD_WORK_LEASE_TTL": "3"})
    client = server.client()
    env, s = self_hosted_session(client)
    key = env_key(server, env.id)
    fake_upstream.enqueue(
        fa.message(fa.tool_use("write", {"file_path": "notes.txt", "content": "from the worker\n"})),
        fa.message(fa.tool_use("bash", {"command": "cat notes.txt; echo sum-$((40+2))"})),
        fa.message(fa.tool_use("bash", {"command": "sleep 60"})),
        fa.message(fa.tool_use("bash", {"command": "echo second-worker"})),
        fa.reply_text("all done"),
    )
    first = start_worker(server, env.id, key, tmp_path / "w1")
    second = None
    try:
        send_text(client, s.id, "go")
        # the first worker runs the file and shell tools in its workdir
        wait_events(client, s.id, lambda evs: types_of(evs).count("user.tool_result") >= 2, timeout=30)
        assert (tmp_path / "w1" / "notes.txt").read_text() == "from the worker\n"
        # it starts the long call; kill it mid-tool and start another worker
        wait_events(client, s.id, lambda evs: types_of(evs).count("agent.tool_use") >= 3, timeout=15)
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = start_worker(server, env.id, key, tmp_path / "w2")
        evs = wait_events(client, s.id, ended, timeout=45)
    finally:
        for p in (first, second):
            if p and p.poll() is None:
                p.kill()
                p.wait()
    for e in evs:
        validate_event(e)
    uses = [e for e in evs if e["type"] == "agent.tool_use"]
    results = {e["tool_use_id"]: e for e in evs if e["type"] == "user.tool_result"}
    assert len(uses) == 4 and set(results) == {u["id"] for u in uses}, "every call answered once"
    assert types_of(evs).count("user.tool_result") == 4
    text = lambda r: "".join(b.get("text", "") for b in r.get("content") or [])
    assert "sum-42" in text(results[uses[1]["id"]]) and "from the worker" in text(results[uses[1]["id"]])
    lost = results[uses[2]["id"]]
    assert lost["is_error"] and "lease expired" in text(lost)
    assert "second-worker" in text(results[uses[3]["id"]])
    assert "agent.tool_result" not in types_of(evs), "agentd itself ran nothing"


def test_a_worker_threads_sandbox_call_gets_an_error_not_a_wait(server, client, scripts_dir):
    """Workers serve the session's own log: a worker thread's bash call on a self-hosted
    environment is answered with an error the model can act on, and the session goes idle."""
    import json

    from conftest import write_script

    toolset = [{"type": "agent_toolset_20260401",
                "default_config": {"enabled": True, "permission_policy": {"type": "always_allow"}}}]
    helper_model = write_script(scripts_dir, "helper", json.dumps({"turns": [
        {"tool_use": {"name": "bash", "input": {"command": "echo hi"}}},
        {"text": "could not run it"},
    ]}))
    helper = client.beta.agents.create(name="helper", model=helper_model, tools=toolset)
    coord_model = write_script(scripts_dir, "coord", json.dumps({"turns": [
        {"tool_use": {"name": "start_thread", "input": {"agent": "helper", "message": "run echo"}}},
        {"text": "waiting"},
        {"echo": True},
    ]}))
    coord = client.beta.agents.create(name="coord", model=coord_model,
                                      multiagent={"type": "coordinator", "agents": [helper.id]})
    env = client.beta.environments.create(name="mine", config={"type": "self_hosted"})
    s = client.beta.sessions.create(agent=coord.id, environment_id=env.id)
    send_text(client, s.id, "go")
    evs = wait_events(client, s.id, lambda e: "could not run it" in str(e) and e[-1]["type"] == "session.status_idle",
                      timeout=20)
    thread = [t for t in client.beta.sessions.threads.list(s.id).data if t.agent.name == "helper"][0]
    tevs = list(client.beta.sessions.threads.events.list(thread.id, session_id=s.id))
    results = [e for e in tevs if e.type == "agent.tool_result"]
    assert len(results) == 1 and results[0].is_error, results
    assert "self-hosted workers" in results[0].content[0].text
    assert client.beta.environments.work.stats(env.id).depth == 0
    assert "user.tool_result" not in types_of(evs)


def test_the_environment_key_serves_a_session_only_while_it_has_live_work(server, client, fake_upstream):
    """The SDK's worker falls back to the environment key for an item's session calls when the
    item carries no secret (`EnvironmentWorker.handle_item` without one)."""
    env, s, w, item, use, t = claimed_call(server, client, fake_upstream, command="echo hi")
    assert w.beta.sessions.retrieve(s.id).id == s.id
    with pytest.raises(anthropic.PermissionDeniedError):
        w.beta.sessions.update(s.id, metadata={"owned": "yes"})
    with pytest.raises(anthropic.PermissionDeniedError):
        w.beta.sessions.events.send(s.id, events=[{"type": "user.message", "content": [{"type": "text", "text": "x"}]}])
    # another session of the environment, with no work: not the key's to read
    other = client.beta.sessions.create(agent=s.agent.id, environment_id=env.id)
    with pytest.raises(anthropic.PermissionDeniedError):
        w.beta.sessions.retrieve(other.id)
    ev = {"type": "user.tool_result", "tool_use_id": use["id"], "content": [{"type": "text", "text": "hi"}]}
    w.beta.sessions.events.send(s.id, events=[ev])
    wait_events(client, s.id, ended, timeout=15)
    w.beta.environments.work.stop(item.id, environment_id=env.id, force=True)
    with pytest.raises(anthropic.PermissionDeniedError):
        w.beta.sessions.retrieve(s.id)
