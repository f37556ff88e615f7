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


def bash_then_done(command):
    """A model that calls bash once per session, then ends its turn once the result is in."""
    def handler(rec):
        if rec.blocks("tool_result"):
            return fa.reply_text("done")
        return fa.message(fa.tool_use("bash", {"command": command}))
    return handler


def test_two_workers_share_one_environments_load(server_factory, fake_upstream, tmp_path):
    server = server_factory(upstream=fake_upstream)
    client = server.client()
    env, first = self_hosted_session(client)
    key = env_key(server, env.id)
    agent_id = first.agent.id
    sessions = [first] + [client.beta.sessions.create(agent=agent_id, environment_id=env.id) for _ in range(5)]
    fake_upstream.handler = bash_then_done("sleep 0.5; pwd")
    sdk_dir = tmp_path / "sdk"
    ours = start_agentd_worker(server, env.id, key, tmp_path / "ours", "--max-sessions", "1", max_idle=1)
    theirs = start_sdk_worker(server, env.id, key, sdk_dir)
    try:
        for s in sessions:
            send_text(client, s.id, "where are you?")
        done = [wait_events(client, s.id, ended, timeout=90) for s in sessions]
    finally:
        stop_all(ours, theirs)
    by = {"agentd": 0, "sdk": 0}
    for evs in done:
        results = [e for e in evs if e["type"] == "user.tool_result"]
        assert len(results) == 1 and not results[0]["is_error"], results
        where = text(results[0]).strip()
        if where == "/workspace":
            by["agentd"] += 1
        else:
            assert where == str(sdk_dir.resolve()), where
            by["sdk"] += 1
    assert by["agentd"] > 0 and by["sdk"] > 0, by


def test_a_restart_of_agentd_while_the_worker_holds_a_lease(server_factory, fake_upstream, tmp_path):
    server = server_factory(upstream=fake_upstream)
    client = server.client()
    env, s = self_hosted_session(client)
    key = env_key(server, env.id)
    fake_upstream.enqueue(
        fa.message(fa.tool_use("bash", {"command": "sleep 3; echo slow-done > slow.txt; echo slow-done"})),
        fa.message(fa.tool_use("bash", {"command": "cat slow.txt; echo after-restart"})),
        fa.reply_text("all done"),
    )
    w = start_agentd_worker(server, env.id, key, tmp_path / "hands")
    try:
        send_text(client, s.id, "go")
        wait_until(lambda: (tmp_path / "hands" / s.id).exists(), timeout=30, what="the worker's sandbox")
        # the worker runs the slow call while agentd dies and comes back
        server.kill()
        time.sleep(1)
        server.restart()
        client = server.client()
        evs = wait_events(client, s.id, ended, timeout=60)
        assert w.poll() is None, "the worker outlived agentd's restart"
    finally:
        stop_all(w)
    for e in evs:
        validate_event(e)
    uses = [e for e in evs if e["type"] == "agent.tool_use"]
    results = results_by_call(evs)
    assert types_of(evs).count("user.tool_result") == 2 and set(results) == {u["id"] for u in uses}
    assert not any(r["is_error"] for r in results.values()), results
    assert "slow-done" in text(results[uses[0]["id"]])
    assert "slow-done" in text(results[uses[1]["id"]]) and "after-restart" in text(results[uses[1]["id"]])
    items = list(worker_client(server, key).beta.environments.work.list(env.id))
    assert len(items) == 1, "the worker kept its lease: the item was never queued again"


def test_a_worker_killed_mid_tool_is_replaced(server_factory, fake_upstream, tmp_path):
    server = server_factory(upstream=fake_upstream, env={"AGENTD_WORK_LEASE_TTL": "3"})
    client = server.client()
    env, s = self_hosted_session(client)
    key = env_key(server, env.id)
    fake_upstream.enqueue(
        fa.message(fa.tool_use("bash", {"command": "echo first > first.txt; sleep 60"})),
        fa.message(fa.tool_use("bash", {"command": "cat first.txt; echo second-worker"})),
        fa.reply_text("all done"),
    )
    first = start_agentd_worker(server, env.id, key, tmp_path / "w1")
    second = None
    try:
        send_text(client, s.id, "go")
        wait_until(lambda: (tmp_path / "w1" / s.id / "first.txt").exists(), timeout=30, what="the long call")
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = start_agentd_worker(server, env.id, key, tmp_path / "w2")
        evs = wait_events(client, s.id, ended, timeout=45)
    finally:
        stop_all(first, second)
    for e in evs:
        validate_event(e)
    uses = [e for e in evs if e["type"] == "agent.tool_use"]
    results = results_by_call(evs)
    assert types_of(evs).count("user.tool_result") == 2 and set(results) == {u["id"] for u in uses}
    lost = results[uses[0]["id"]]
    assert lost["is_error"] and "lease expired" in text(lost)
    # the second worker has its own workdir: the first one's files are not there
    second_out = text(results[uses[1]["id"]])
    assert not results[uses[1]["id"]]["is_error"] or "No such file" in second_out
    assert "second-worker" in second_out


def raw(server, method, path, key, **kw):
    from conftest import raw_request
    return raw_request(server, method, path, key=None, headers={"authorization": f"Bearer {key}"}, **kw)


def test_bad_input_on_each_work_endpoint_names_the_field(server, client, fake_upstream):
    env, s = self_hosted_session(client)
    key = env_key(server, env.id)
    fake_upstream.enqueue(fa.message(fa.tool_use("bash", {"command": "true"})), fa.reply_text("ok"))
    send_text(client, s.id, "go")
    w = worker_client(server, key)
    item = wait_until(lambda: w.beta.environments.work.poll(env.id, block_ms=500), timeout=15, what="a work item")
    base = f"/v1/environments/{env.id}/work"
    api = server.key
    cases = [
        # (method, path, credential, body, field)
        ("GET", f"{base}/poll?block_ms=0", key, None, "block_ms"),
        ("GET", f"{base}/poll?block_ms=soon", key, None, "block_ms"),
        ("GET", f"{base}/poll?reclaim_older_than_ms=-5", key, None, "reclaim_older_than_ms"),
        ("GET", f"{base}?limit=0", key, None, "limit"),
        ("GET", f"{base}?limit=many", key, None, "limit"),
        ("POST", f"{base}/{item.id}/heartbeat?desired_ttl_seconds=0", key, None, "desired_ttl_seconds"),
        ("POST", f"{base}/{item.id}/heartbeat?desired_ttl_seconds=forever", key, None, "desired_ttl_seconds"),
        ("POST", f"{base}/{item.id}/stop", api, {"force": "yes"}, "force"),
        ("POST", f"{base}/{item.id}/stop", api, {"forse": True}, "forse"),
        ("POST", f"{base}/{item.id}", api, {}, "metadata"),
        ("POST", f"{base}/{item.id}", api, {"metadata": ["a"]}, "metadata"),
        ("POST", f"{base}/{item.id}", api, {"metadata": {"k": 5}}, "metadata"),
    ]
    for method, path, cred, body, field in cases:
        r = raw(server, method, path, cred, json_body=body)
        assert r.status_code == 400, (method, path, body, r.status_code, r.text)
        err = r.json()
        assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error", err
        assert field in err["error"]["message"], (path, body, err)
    # an id that is not a work item's is a 404, whichever endpoint
    for method, path, cred in [("POST", f"{base}/work_nope/ack", key), ("GET", f"{base}/work_nope", api),
                               ("POST", f"{base}/work_nope/heartbeat", key), ("POST", f"{base}/work_nope/stop", api)]:
        r = raw(server, method, path, cred)
        assert r.status_code == 404, (path, r.status_code, r.text)
    # the item is untouched by all of that
    assert client.beta.environments.work.retrieve(item.id, environment_id=env.id).state == "queued"


def test_sigterm_finishes_the_running_call_then_hands_the_item_back(server_factory, fake_upstream, tmp_path):
    server = server_factory(upstream=fake_upstream)
    client = server.client()
    env, s = self_hosted_session(client)
    key = env_key(server, env.id)
    fake_upstream.enqueue(
        fa.message(fa.tool_use("bash", {"command": "touch started; sleep 2; echo finished-before-exit"})),
        fa.message(fa.tool_use("bash", {"command": "echo next-worker"})),
        fa.reply_text("all done"),
    )
    first = start_agentd_worker(server, env.id, key, tmp_path / "w1", max_idle=60)
    second = None
    try:
        send_text(client, s.id, "go")
        wait_until(lambda: (tmp_path / "w1" / s.id / "started").exists(), timeout=30, what="the call to start")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
        evs = list_raw_events(client, s.id)
        done = [e for e in evs if e["type"] == "user.tool_result"]
        assert len(done) == 1 and not done[0]["is_error"] and "finished-before-exit" in text(done[0])
        items = list(worker_client(server, key).beta.environments.work.list(env.id))
        assert [i.state for i in items] in (["stopped"], ["queued", "stopped"]), [i.state for i in items]
        second = start_agentd_worker(server, env.id, key, tmp_path / "w2")
        evs = wait_events(client, s.id, ended, timeout=45)
    finally:
        stop_all(first, second)
    uses = [e for e in evs if e["type"] == "agent.tool_use"]
    results = results_by_call(evs)
    assert types_of(evs).count("user.tool_result") == 2 and set(results) == {u["id"] for u in uses}
    assert "next-worker" in text(results[uses[1]["id"]]) and not results[uses[1]["id"]]["is_error"]


def host_address():
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    v4 = [a for a in out if "." in a and not a.startswith("127.")]
    return v4[0] if v4 else None


def test_the_workers_egress_policy_is_enforced_on_its_host(server_factory, fake_upstream, tmp_path):
    import http.server
    import threading

    addr = host_address()
    if addr is None:
        pytest.skip("this host has no non-loopback IPv4 address to serve from")

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"hello-from-the-lan"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    lan = http.server.ThreadingHTTPServer((addr, 0), Hello)
    threading.Thread(target=lan.serve_forever, daemon=True).start()
    url = f"http://{addr}:{lan.server_address[1]}/"
    server = server_factory(upstream=fake_upstream)
    client = server.client()
    fake_upstream.handler = bash_then_done(f"curl -s -m 5 -w ' status=%{{http_code}}' {url}")
    outputs = {}
    for name, flags in [("open", ["--allow-host", addr, "--egress-allow-private", f"{addr}/32"]),
                        ("closed", [])]:
        env, s = self_hosted_session(client)
        key = env_key(server, env.id)
        w = start_agentd_worker(server, env.id, key, tmp_path / name, *flags)
        try:
            send_text(client, s.id, "fetch it")
            evs = wait_events(client, s.id, ended, timeout=60)
        finally:
            stop_all(w)
        outputs[name] = text(results_by_call(evs).popitem()[1])
    lan.shutdown()
    assert "hello-from-the-lan" in outputs["open"] and "status=200" in outputs["open"], outputs
    assert "hello-from-the-lan" not in outputs["closed"] and "status=403" in outputs["closed"], outputs
