"""Many agentd processes over one PostgreSQL database, driven through the SDK.

Claims under test: a client may talk to any process about any session; a session another
process is running is left to it (its lease), and work posted elsewhere reaches it (a
nudge), interrupts included; when a process is SIGKILLed mid-turn, another takes its
sessions over once their leases expire, and every session ends with exactly one answer per
message and a log without duplicates.

Needs AGENTD_TEST_POSTGRES_URL (./scripts/test.sh starts a throwaway server); skipped
without it.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import secrets
import socket
import subprocess
import threading
import time

import anthropic
import pytest

import fake_anthropic as fa
from conftest import list_raw_events, make_agent, make_env, send_text, wait_idle, wait_until, write_script

ADMIN = os.environ.get("AGENTD_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not ADMIN, reason="needs AGENTD_TEST_POSTGRES_URL")

LEASE_SECS = 2
SLOW_ECHO = """
delay_ms: 700
turns:
  - {echo: true}
  - {echo: true}
  - {echo: true}
"""


def new_database() -> str:
    name = f"many_{secrets.token_hex(6)}"
    subprocess.run(["psql", ADMIN, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return ADMIN.rsplit("/", 1)[0] + "/" + name


def cluster(server_factory, n: int):
    db = new_database()
    env = {"AGENTD_DATABASE_URL": db, "AGENTD_LEASE_SECS": str(LEASE_SECS)}
    first = server_factory(env=env)
    return [first] + [server_factory(env=env, key=first.key) for _ in range(n - 1)]


def answers(client, sid) -> list:
    return [e["content"][0]["text"] for e in list_raw_events(client, sid) if e["type"] == "agent.message"]


def assert_one_history(client, sid):
    evs = list_raw_events(client, sid)
    ids = [e["id"] for e in evs]
    assert len(ids) == len(set(ids)), f"duplicate events in {sid}"


def test_any_process_serves_any_session_and_the_dead_ones_sessions_move(server_factory, scripts_dir):
    model = write_script(scripts_dir, "slow_echo", SLOW_ECHO)
    procs = cluster(server_factory, 3)
    clients = [p.client() for p in procs]
    agent = make_agent(clients[0], model=model)
    env = make_env(clients[1])
    sessions = [
        clients[i % 3].beta.sessions.create(agent=agent.id, environment_id=env.id).id for i in range(6)
    ]
    # Posted to one process, watched through the next.
    for i, sid in enumerate(sessions):
        send_text(clients[i % 3], sid, f"first {i}")
    for i, sid in enumerate(sessions):
        wait_idle(clients[(i + 1) % 3], sid, timeout=30)
        assert answers(clients[(i + 2) % 3], sid) == [f"echo: first {i}"]

    # Every second message goes through the process about to die, mid-turn.
    doomed = procs[0]
    for i, sid in enumerate(sessions):
        send_text(clients[0], sid, f"second {i}")
    time.sleep(0.3)
    doomed.kill()
    survivor = clients[1]
    for i, sid in enumerate(sessions):
        wait_idle(survivor, sid, count=2, timeout=LEASE_SECS * 10 + 20)
        assert answers(clients[2], sid) == [f"echo: first {i}", f"echo: second {i}"]
        assert_one_history(survivor, sid)


def test_an_interrupt_posted_anywhere_stops_the_owners_turn(server_factory, scripts_dir):
    model = write_script(scripts_dir, "very_slow", "delay_ms: 20000\nturns:\n  - {text: too late}\n")
    owner, other = cluster(server_factory, 2)
    a, b = owner.client(), other.client()
    agent = make_agent(a, model=model)
    sid = a.beta.sessions.create(agent=agent.id, environment_id=make_env(a).id).id
    send_text(a, sid, "take your time")
    wait_until(lambda: a.beta.sessions.retrieve(sid).status == "running", 10, what="running")
    started = time.monotonic()
    b.beta.sessions.events.send(sid, events=[{"type": "user.interrupt"}])
    wait_idle(b, sid, timeout=15)
    assert time.monotonic() - started < 10, "the owner's model call was not cancelled"
    assert answers(a, sid) == []
    assert_one_history(a, sid)


def test_a_paused_owner_loses_its_sessions_and_cannot_fork_their_logs(server_factory, scripts_dir):
    """Split brain: the owner is stopped (SIGSTOP) mid-turn past its lease, another process
    takes the sessions over and finishes them; when the paused one resumes, its late appends
    are refused (the log names the tail each append expects), so every log stays one history."""
    model = write_script(scripts_dir, "slow_echo2", SLOW_ECHO)
    paused, other = cluster(server_factory, 2)
    a, b = paused.client(), other.client()
    agent = make_agent(a, model=model)
    env = make_env(a)
    sessions = [a.beta.sessions.create(agent=agent.id, environment_id=env.id).id for _ in range(4)]
    for i, sid in enumerate(sessions):
        send_text(a, sid, f"hello {i}")
    time.sleep(0.3)
    paused.proc.send_signal(signal.SIGSTOP)
    try:
        for i, sid in enumerate(sessions):
            wait_idle(b, sid, timeout=LEASE_SECS * 10 + 20)
    finally:
        paused.proc.send_signal(signal.SIGCONT)
    # Let the resumed process run into the refusals, then look again.
    time.sleep(LEASE_SECS * 2)
    for i, sid in enumerate(sessions):
        assert answers(b, sid) == [f"echo: hello {i}"]
        assert_one_history(b, sid)
        assert b.beta.sessions.retrieve(sid).status == "idle"
    assert paused.alive, "the resumed process keeps serving"
    send_text(a, sessions[0], "after")
    wait_idle(a, sessions[0], count=2, timeout=20)
    assert answers(b, sessions[0]) == ["echo: hello 0", "echo: after"]


MOVING_WORKSPACE = """
turns:
  - {tool_use: {name: bash, input: {command: "echo kept > f.txt"}}}
  - {text: wrote}
  - {tool_use: {name: bash, input: {command: "cat f.txt"}}}
  - {tool_use: {name: bash, input: {command: "cat f.txt 2>/dev/null || echo none; echo again > g.txt"}}}
  - {text: done}
"""
TOOLSET = {"type": "agent_toolset_20260401",
           "default_config": {"enabled": True, "permission_policy": {"type": "always_allow"}}}


def tool_results(client, sid) -> list:
    return [(e["is_error"], "".join(c.get("text", "") for c in e["content"] or []).strip())
            for e in list_raw_events(client, sid) if e["type"] == "agent.tool_result"]


@pytest.mark.parametrize("shared", [False, True], ids=["own-roots", "shared-root"])
def test_a_session_that_moves_keeps_its_files_only_with_a_shared_workspace_root(
        server_factory, scripts_dir, tmp_path, shared):
    model = write_script(scripts_dir, "moving_workspace", MOVING_WORKSPACE)
    db = new_database()
    env = {"AGENTD_DATABASE_URL": db, "AGENTD_LEASE_SECS": str(LEASE_SECS)}
    if shared:
        env["AGENTD_WORKSPACE_ROOT"] = str(tmp_path / "shared-workspaces")
    first = server_factory(env=env)
    second = server_factory(env=env, key=first.key)
    a, b = first.client(), second.client()
    agent = make_agent(a, model=model, tools=[TOOLSET])
    sid = a.beta.sessions.create(agent=agent.id, environment_id=make_env(a).id).id
    send_text(a, sid, "write it")
    wait_idle(a, sid, timeout=30)
    assert tool_results(a, sid) == [(False, "")]
    first.kill()

    send_text(b, sid, "read it")
    wait_idle(b, sid, count=2, timeout=LEASE_SECS * 10 + 30)
    results = tool_results(b, sid)
    if shared:
        # The files followed the session.
        assert results[1:] == [(False, "kept"), (False, "kept")], results
    else:
        # The model is told, the call did not run, and the next one gets a fresh workspace.
        assert results[1][0] is True and "workspace of this session was lost" in results[1][1], results
        assert results[2] == (False, "none"), results
    assert answers(b, sid) == ["wrote", "done"]
    assert_one_history(b, sid)


class RoundRobin:
    """A TCP front that hands each new connection to the next process that takes it, as a
    load balancer would; a connection whose process dies is simply cut."""

    def __init__(self, ports: list):
        self.ports = ports
        self.turn = itertools.count()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        start = next(self.turn)
        for k in range(len(self.ports)):
            try:
                out = socket.create_connection(("127.0.0.1", self.ports[(start + k) % len(self.ports)]), 1)
                break
            except OSError:
                continue
        else:
            conn.close()
            return
        out.settimeout(None)

        def pipe(a, b):
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            for x in (a, b):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=pipe, args=(out, conn), daemon=True).start()
        pipe(conn, out)

    def close(self):
        self.sock.close()


class Reader(threading.Thread):
    """An SSE client of one session through the front: on a cut it reconnects with the
    Last-Event-ID it saw last, as a client of the reference platform does."""

    def __init__(self, client, sid):
        super().__init__(daemon=True)
        self.client, self.sid, self.ids, self.stop = client, sid, [], threading.Event()
        self.connected = threading.Event()
        self.reconnects = 0

    def run(self):
        while not self.stop.is_set():
            headers = {"Last-Event-ID": self.ids[-1]} if self.ids else {}
            try:
                with self.client.beta.sessions.events.stream(self.sid, extra_headers=headers) as s:
                    self.connected.set()
                    for ev in s:
                        self.ids.append(ev.id)
                        if self.stop.is_set():
                            return
            except Exception:
                pass
            self.reconnects += 1
            time.sleep(0.1)


def chaos_model(fake):
    """Each message gets a bash call that appends it to effects.txt, then an answer naming it;
    slow enough that kills land mid-turn."""
    def reply(req):
        texts = [b["text"] for m in req.messages if m["role"] == "user" and isinstance(m["content"], list)
                 for b in m["content"] if b.get("type") == "text"]
        last = req.messages[-1]["content"]
        answered_tool = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
        if answered_tool:
            return fa.reply_text(f"done {texts[-1]}", delay=0.15)
        return fa.message(fa.tool_use("bash", {"command": f"echo {texts[-1]} >> effects.txt; sleep 0.2"}),
                          delay=0.15)
    fake.handler = reply


def test_chaos_processes_killed_and_restarted_lose_and_repeat_nothing(
        server_factory, fake_upstream, tmp_path):
    """Chaos: three processes on one database and one shared workspace root, behind a
    round-robin front; one is SIGKILLed and restarted every 1.5 s while clients send each
    session three messages, each answered after a bash call, and an SSE reader follows every
    session through the front. At the end every session has exactly one answer per message,
    in order; no event twice; no bash call ran twice (its side effects are counted); and every
    reader saw every event exactly once. CHAOS_SESSIONS (12), CHAOS_SECONDS (20) and
    CHAOS_SEED scale and replay it."""
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "0")) or None)
    n_sessions = int(os.environ.get("CHAOS_SESSIONS", "12"))
    chaos_model(fake_upstream)
    env = {"AGENTD_DATABASE_URL": new_database(), "AGENTD_LEASE_SECS": str(LEASE_SECS),
           "AGENTD_WORKSPACE_ROOT": str(tmp_path / "workspaces")}
    first = server_factory(env=env, upstream=fake_upstream)
    procs = [first] + [server_factory(env=env, key=first.key, upstream=fake_upstream) for _ in range(2)]
    front = RoundRobin([p.port for p in procs])
    client = anthropic.Anthropic(base_url=f"http://127.0.0.1:{front.port}", api_key=first.key,
                                 max_retries=0, timeout=15)
    agent = make_agent(client, model="claude-sonnet-4-6", tools=[TOOLSET])
    env_id = make_env(client).id
    sessions = [client.beta.sessions.create(agent=agent.id, environment_id=env_id).id for _ in range(n_sessions)]
    readers = {sid: Reader(client, sid) for sid in sessions}
    for r in readers.values():
        r.start()
        assert r.connected.wait(10)
    sent = {sid: 0 for sid in sessions}

    def step():
        for sid in sessions:
            if sent[sid] >= 3:
                continue
            try:
                if client.beta.sessions.retrieve(sid).status != "idle" or len(answers(client, sid)) < sent[sid]:
                    continue
                send_text(client, sid, f"m{sent[sid]}")
                sent[sid] += 1
            except Exception:
                pass  # that process just died; the next try goes elsewhere

    kills = 0
    deadline = time.monotonic() + float(os.environ.get("CHAOS_SECONDS", "20"))
    next_kill = time.monotonic() + 1.5
    while time.monotonic() < deadline or any(n < 3 for n in sent.values()):
        step()
        if time.monotonic() >= next_kill and time.monotonic() < deadline:
            victim = rng.choice(procs)
            victim.kill()
            victim.restart()
            kills += 1
            next_kill = time.monotonic() + 1.5
        if time.monotonic() > deadline + 120:
            break
        time.sleep(0.1)
    assert all(n == 3 for n in sent.values()), sent
    c = procs[1].client()
    for sid in sessions:
        wait_idle(c, sid, count=3, timeout=LEASE_SECS * 10 + 30)
        assert answers(c, sid) == ["done m0", "done m1", "done m2"], sid
        assert_one_history(c, sid)
        # A call cut by a kill is answered as interrupted and never run again: each message
        # was written at most once, and every call answered as run was.
        effects = (tmp_path / "workspaces" / sid / "effects.txt").read_text().split()
        assert len(effects) == len(set(effects)), (sid, effects)
        ran = [r for r in tool_results(c, sid) if not r[0]]
        assert len(ran) <= len(effects) <= 3, (sid, ran, effects)
    for sid, r in readers.items():
        want = [e["id"] for e in list_raw_events(c, sid)]
        wait_until(lambda: len(r.ids) >= len(want), 30, what=f"reader of {sid} caught up")
        r.stop.set()
        assert r.ids == want, (sid, len(r.ids), len(want))
    front.close()
    print(f"chaos: {n_sessions} sessions, {kills} kills, "
          f"{sum(r.reconnects for r in readers.values())} stream reconnects")
