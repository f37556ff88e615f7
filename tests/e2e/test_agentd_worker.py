"""`agentd worker`, the Rust worker, as the hands of self_hosted sessions: it runs bash and the
file tools in the bubblewrap sandbox under its workdir, holds no credential inside it, shares
an environment's load with the SDK's own worker, outlives a restart of agentd without a call
answered twice, and hands its items back when told to stop."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import fake_anthropic as fa
from conftest import list_raw_events, send_text, types_of, validate_event, wait_events, wait_until
from test_self_hosted import ended, env_key, self_hosted_session, start_worker as start_sdk_worker, worker_client


def start_agentd_worker(server, env_id, key, workdir: Path, *extra: str, max_idle: int = 5):
    workdir.mkdir(parents=True, exist_ok=True)
    log = open(workdir.parent / f"{workdir.name}.log", "ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
    env["AGENTD_LOG"] = "info"
    return subprocess.Popen(
        [str(server.binary), "worker", "--url", server.url, "--environment", env_id, "--key", key,
         "--workdir", str(workdir), "--max-idle-secs", str(max_idle), *extra],
        stdout=log, stderr=subprocess.STDOUT, env=env)


def stop_all(*procs):
    for p in procs:
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()


def text(r):
    return "".join(b.get("text", "") for b in r.get("content") or [])


def results_by_call(evs):
    return {e["tool_use_id"]: e for e in evs if e["type"] == "user.tool_result"}


def test_agentd_worker_runs_bash_and_file_tools_in_its_sandbox(server_factory, fake_upstream, tmp_path):
    server = server_factory(upstream=fake_upstream)
    client = server.client()
    env, s = self_hosted_session(client)
    key = env_key(server, env.id)
    fake_upstream.enqueue(
        fa.message(fa.tool_use("write", {"file_path": "notes.txt", "content": "from the rust worker\n"})),
        fa.message(fa.tool_use("edit", {"file_path": "notes.txt", "old_string": "rust", "new_string": "agentd"})),
        fa.message(fa.tool_use("read", {"file_path": "notes.txt"})),
        fa.message(fa.tool_use("bash", {"command": "cat notes.txt; echo sum-$((40+2)); env; id -u; pwd"})),
        fa.reply_text("all done"),
    )
    workdir = tmp_path / "hands"
    w = start_agentd_worker(server, env.id, key, workdir)
    try:
        send_text(client, s.id, "go")
        evs = wait_events(client, s.id, ended, timeout=60)
        stats = client.beta.environments.work.stats(env.id)
        assert stats.workers_polling == 1
        # SIGTERM: the worker hands its item back and exits cleanly
        w.send_signal(signal.SIGTERM)
        assert w.wait(timeout=20) == 0
    finally:
        stop_all(w)
    assert [i.state for i in worker_client(server, key).beta.environments.work.list(env.id)] == ["stopped"]
    for e in evs:
        validate_event(e)
    uses = [e for e in evs if e["type"] == "agent.tool_use"]
    results = results_by_call(evs)
    assert len(uses) == 4 and set(results) == {u["id"] for u in uses}
    assert types_of(evs).count("user.tool_result") == 4, "each call answered once"
    assert "agent.tool_result" not in types_of(evs), "agentd itself ran nothing"
    assert not any(r["is_error"] for r in results.values()), results
    assert "from the agentd worker" in text(results[uses[2]["id"]])
    out = text(results[uses[3]["id"]])
    assert "sum-42" in out and "from the agentd worker" in out
    # the sandbox's workspace is the session's directory under --workdir
    assert (workdir / s.id / "notes.txt").read_text() == "from the agentd worker\n"
    assert "/workspace" in out
    # nothing of the worker's credentials reaches the sandbox
    token_prefix = "sk-agentd-"
    assert key not in out and token_prefix not in out and "AGENTD" not in out
    # the request that went to the model carried the worker's answer
    assert fake_upstream.messages_requests()[4].blocks("tool_result")[-1]["tool_use_id"] == uses[3]["id"]
