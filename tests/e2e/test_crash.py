"""Crash recovery, end to end, through the official Python SDK.

Claim under test: SIGKILL agentd at any point (while the model streams, between a tool use
and its result, in the middle of an append) and restart it on the same data dir: every
session completes; each session's log has no gap and no duplicate; a half-streamed model
response is dropped and made again, so the user sees exactly one `agent.message` per model
response.

Self-contained: this file starts its own agentd processes (binary from $AGENTD_BIN, else
target/debug/agentd), writes its own scripted-model YAML files, and acts as the custom
tool executor. CRASH_SEED reuses a run's kill schedule (the timings it meets still vary);
CRASH_KILLS sets the number of kills in the storm (default 15) for a longer soak.

Tests:
- the storm: 12 sessions (two scripts, three model requests each, custom tool calls answered
  by this file), 15 SIGKILL/restart cycles at random moments, then every log is checked
  through the API and, with the server stopped, in the SQLite file.
- a kill while one long reply is streaming (seen through the preview stream), and a second
  kill while the resumed request streams again: one agent.message, one span.
- a tool result re-sent after a crash is refused, not logged twice.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import anthropic
import pytest

AGENTD_BIN = os.environ.get("AGENTD_BIN", "/work/main/target/debug/agentd")
API_KEY = "sk-crash-test"
BETA = "managed-agents-2026-04-01"

N_SESSIONS = 12
N_KILLS = int(os.environ.get("CRASH_KILLS", "15"))
FINISH_DEADLINE_S = 60.0

LOOKUP_TOOL = {
    "type": "custom",
    "name": "lookup",
    "description": "Look a word up and return what it means.",
    "input_schema": {
        "type": "object",
        "properties": {"q": {"type": "string"}},
        "required": ["q"],
    },
}

# Two scripts, three model requests each. Text is streamed in chunks with a pause between
# chunks, and every turn waits before answering, so a kill often lands mid-request.
#   A: text + tool_use -> tool_use -> final text
#   B: text + two parallel tool_uses -> text + tool_use -> final text
FINAL_A = "All three lookups are done; the answer is forty-two."
FINAL_B = "Both rounds of lookups are done; the answer is still forty-two."
SCRIPTS = {
    "crash_a": {
        "delay_ms": 120,
        "chunk_chars": 4,
        "chunk_delay_ms": 25,
        "turns": [
            {"text": "Let me look that up.", "tool_use": {"name": "lookup", "input": {"q": "alpha"}}},
            {"tool_use": {"name": "lookup", "input": {"q": "beta"}}, "delay_ms": 180},
            {"text": FINAL_A, "delay_ms": 80},
        ],
    },
    "crash_b": {
        "delay_ms": 100,
        "chunk_chars": 5,
        "chunk_delay_ms": 25,
        "turns": [
            {
                "content": [
                    {"text": "Checking two things at once."},
                    {"tool_use": {"name": "lookup", "input": {"q": "gamma"}}},
                    {"tool_use": {"name": "lookup", "input": {"q": "delta"}}},
                ]
            },
            {"text": "One more check.", "tool_use": {"name": "lookup", "input": {"q": "epsilon"}}},
            {"text": FINAL_B, "delay_ms": 60},
        ],
    },
    # One long, slowly streamed reply (26 chunks, about 1.5 s of streaming) for the focused test.
    "crash_stream": {
        # The pause before the reply gives a stream opened right after a restart the time
        # to subscribe before the resumed request starts streaming.
        "delay_ms": 400,
        "chunk_chars": 8,
        "chunk_delay_ms": 60,
        "turns": [
            {
                "text": (
                    "This reply streams slowly, eight characters at a time, so that a kill "
                    "lands while it is still being produced; after the restart it must be "
                    "made again from the very first character and logged exactly once."
                )
            }
        ],
    },
}
STREAM_TEXT = SCRIPTS["crash_stream"]["turns"][0]["text"]
PROMPT = "Please look a few things up for me, then tell me the answer."


def tool_result_text(tool_input: dict) -> str:
    return f"lookup({tool_input.get('q')}) = meaning of {tool_input.get('q')}"


def expected_conversation(script: str) -> list[tuple]:
    """The user-visible conversation a session running `script` must log, in order."""
    def use(q):
        return ("agent.custom_tool_use", "lookup", json.dumps({"q": q}, sort_keys=True))

    def res(q):
        return ("user.custom_tool_result", tool_result_text({"q": q}))

    if script == "crash_a":
        return [
            ("user.message", PROMPT),
            ("agent.message", "Let me look that up."),
            use("alpha"),
            res("alpha"),
            use("beta"),
            res("beta"),
            ("agent.message", FINAL_A),
        ]
    assert script == "crash_b"
    return [
        ("user.message", PROMPT),
        ("agent.message", "Checking two things at once."),
        use("gamma"),
        use("delta"),
        res("gamma"),
        res("delta"),
        ("agent.message", "One more check."),
        use("epsilon"),
        res("epsilon"),
        ("agent.message", FINAL_B),
    ]


def expected_spans(script: str) -> list[list[tuple]]:
    """What each model response (span) holds, in order: agent.message / tool-use entries."""
    conv = expected_conversation(script)
    spans: list[list[tuple]] = []
    current: list[tuple] | None = None
    for item in conv:
        if item[0] in ("agent.message", "agent.custom_tool_use"):
            if current is None:
                current = []
                spans.append(current)
            current.append(item)
        else:
            current = None
    return spans


# --------------------------------------------------------------------------------------------
# Process and client helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One agentd data dir, served by a succession of processes on the same port."""

    def __init__(self, root: Path):
        self.data_dir = root / "data"
        self.scripts_dir = root / "scripts"
        self.log_path = root / "agentd.log"
        self.scripts_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def db_path(self) -> Path:
        return self.data_dir / "agentd.db"

    def write_script(self, name: str, script: dict) -> None:
        # JSON is YAML.
        (self.scripts_dir / f"{name}.yaml").write_text(json.dumps(script, indent=2))

    def start(self, timeout: float = 15.0) -> None:
        assert self.proc is None
        env = dict(os.environ)
        env.update(
            AGENTD_API_KEY=API_KEY,
            AGENTD_SCRIPTS_DIR=str(self.scripts_dir),
            AGENTD_RATE_LIMIT="0",
            AGENTD_LOG=os.environ.get("AGENTD_LOG", "warn"),
        )
        deadline = time.monotonic() + timeout
        while True:
            with open(self.log_path, "ab") as log:
                log.write(f"\n===== start #{self.starts} =====\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    [AGENTD_BIN, "serve", "--listen", f"127.0.0.1:{self.port}",
                     "--data-dir", str(self.data_dir)],
                    env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                )
            self.starts += 1
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self._healthy():
                    return
                time.sleep(0.01)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
                self.proc = None
                raise AssertionError(f"agentd did not become healthy:\n{self.log_tail()}")
            # Exited early (e.g. the port was not free yet): try again until the deadline.
            self.proc = None
            if time.monotonic() >= deadline:
                raise AssertionError(f"agentd exited at start:\n{self.log_tail()}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/health", timeout=0.5) as r:
                return r.status == 200 and r.read().strip() == b"ok"
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@pytest.fixture
def crash_server(tmp_path):
    srv = Server(tmp_path)
    for name, script in SCRIPTS.items():
        srv.write_script(name, script)
    yield srv
    srv.stop()


def make_client(srv: Server) -> anthropic.Anthropic:
    # No SDK retries: a POST whose response was lost must not be sent twice blindly; the
    # test re-reads the log instead.
    return anthropic.Anthropic(base_url=srv.base_url, api_key=API_KEY, max_retries=0, timeout=10)


def retrying(fn, deadline: float):
    """Call fn until it does not fail for want of a server (it may be down, being restarted)."""
    while True:
        try:
            return fn()
        except anthropic.APIConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def raw_events(client: anthropic.Anthropic, sid: str, order: str = "asc", limit: int = 1000) -> list[dict]:
    """Every event of a session as raw JSON, following `next_page`."""
    out: list[dict] = []
    page = None
    while True:
        params = {"order": order, "limit": limit}
        if page:
            params["page"] = page
        body = client.get(
            f"/v1/sessions/{sid}/events",
            cast_to=object,
            options={"params": params, "headers": {"anthropic-beta": BETA}},
        )
        out.extend(body["data"])
        page = body.get("next_page")
        if not page:
            return out


def ts(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def text_of(content) -> str:
    return "".join(b["text"] for b in content if b.get("type") == "text")


def last_status(events: list[dict]) -> dict | None:
    for e in reversed(events):
        if e["type"].startswith("session.status_"):
            return e
    return None


# --------------------------------------------------------------------------------------------
# The tool executor


class Driver(threading.Thread):
    """Plays the client: answers every custom tool use of an idle session that requires
    action, after a short random "execution" time, and notes when a session is done.

    It never re-sends a POST whose outcome is unknown (connection error): it re-reads the log,
    where a result that was stored shows up, and only then decides again.
    """

    def __init__(self, srv: Server, sids: list[str], rng: random.Random):
        super().__init__(daemon=True)
        self.client = make_client(srv)
        self.sids = sids
        self.rng = rng
        self.stop_evt = threading.Event()
        self.done: set[str] = set()
        self.ready_at: dict[str, float] = {}
        self.posted = 0
        self.lost_posts = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop_evt.is_set():
            for sid in self.sids:
                if sid in self.done or self.stop_evt.is_set():
                    continue
                try:
                    self.step(sid)
                except anthropic.APIConnectionError:
                    pass
                except Exception as e:  # noqa: BLE001 - reported by the test
                    self.errors.append(f"{sid}: {e!r}")
            time.sleep(0.02)

    def step(self, sid: str) -> None:
        evs = raw_events(self.client, sid)
        st = last_status(evs)
        if st is None or st["type"] != "session.status_idle":
            return
        reason = st["stop_reason"]["type"]
        if reason == "end_turn":
            self.done.add(sid)
            return
        if reason != "requires_action":
            self.errors.append(f"{sid}: unexpected stop_reason {st['stop_reason']}")
            self.done.add(sid)
            return
        answered = {e["custom_tool_use_id"] for e in evs if e["type"] == "user.custom_tool_result"}
        uses = {e["id"]: e for e in evs if e["type"] == "agent.custom_tool_use"}
        now = time.monotonic()
        for eid in st["stop_reason"]["event_ids"]:
            if eid in answered:
                continue
            if eid not in uses:
                self.errors.append(f"{sid}: requires_action names {eid}, not a custom tool use")
                return
            ready = self.ready_at.setdefault(eid, now + self.rng.uniform(0.02, 0.25))
            if now < ready:
                return
            try:
                self.client.beta.sessions.events.send(
                    sid,
                    events=[{
                        "type": "user.custom_tool_result",
                        "custom_tool_use_id": eid,
                        "content": [{"type": "text", "text": tool_result_text(uses[eid]["input"])}],
                    }],
                )
                self.posted += 1
            except anthropic.APIConnectionError:
                self.lost_posts += 1
                return


# --------------------------------------------------------------------------------------------
# Checks


def check_log(sid: str, evs: list[dict], script: str) -> list[str]:
    """Every invariant one session's final log must hold. Returns the failures."""
    bad: list[str] = []
    ids = [e["id"] for e in evs]
    if len(ids) != len(set(ids)):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        bad.append(f"duplicate event ids {dup}")
    times = [ts(e["processed_at"]) for e in evs]
    if times != sorted(times):
        bad.append("processed_at goes backwards in log order")

    last = evs[-1] if evs else {}
    if last.get("type") != "session.status_idle" or last.get("stop_reason", {}).get("type") != "end_turn":
        bad.append(f"log does not end idle/end_turn: {last}")

    # Status events alternate running, idle, running, ..., idle.
    statuses = [e["type"] for e in evs if e["type"].startswith("session.status_")]
    want = ["session.status_running", "session.status_idle"] * (len(statuses) // 2)
    if statuses != want:
        bad.append(f"status events do not alternate running/idle: {statuses}")

    errors = [e for e in evs if e["type"] == "session.error"]
    if errors:
        bad.append(f"session.error events: {errors}")

    # Spans: every end matches exactly one earlier start, no start is left open, spans do
    # not overlap, and each ended without error.
    starts = {e["id"]: i for i, e in enumerate(evs) if e["type"] == "span.model_request_start"}
    ends = [(i, e) for i, e in enumerate(evs) if e["type"] == "span.model_request_end"]
    ended: dict[str, int] = {}
    for i, e in ends:
        sref = e.get("model_request_start_id")
        if sref not in starts:
            bad.append(f"span end {e['id']} names unknown start {sref}")
            continue
        if sref in ended:
            bad.append(f"span start {sref} has two ends")
            continue
        if starts[sref] > i:
            bad.append(f"span end {e['id']} precedes its start")
        ended[sref] = i
        if e.get("is_error"):
            bad.append(f"span {sref} ended with is_error")
    unmatched = sorted(set(starts) - set(ended))
    if unmatched:
        bad.append(f"span starts with no end: {unmatched}")
    pairs = sorted((starts[s], ended[s]) for s in ended)
    for (a0, a1), (b0, _b1) in zip(pairs, pairs[1:]):
        if b0 < a1:
            bad.append("model request spans overlap")

    # The conversation the user sees: exactly the script, once.
    conv = []
    use_of_result = []
    for e in evs:
        t = e["type"]
        if t in ("user.message", "agent.message"):
            conv.append((t, text_of(e["content"])))
        elif t == "agent.custom_tool_use":
            conv.append((t, e["name"], json.dumps(e["input"], sort_keys=True)))
        elif t == "user.custom_tool_result":
            conv.append((t, text_of(e.get("content") or [])))
            use_of_result.append(e["custom_tool_use_id"])
    want_conv = expected_conversation(script)
    if conv != want_conv:
        bad.append("conversation differs from the script:\n  got  "
                   + "\n       ".join(map(str, conv))
                   + "\n  want " + "\n       ".join(map(str, want_conv)))

    # Each tool use answered exactly once, by a result with the right content, after it.
    pos = {e["id"]: i for i, e in enumerate(evs)}
    for e in evs:
        if e["type"] != "agent.custom_tool_use":
            continue
        answers = [r for r in evs if r["type"] == "user.custom_tool_result"
                   and r["custom_tool_use_id"] == e["id"]]
        if len(answers) != 1:
            bad.append(f"tool use {e['id']} has {len(answers)} results")
            continue
        if pos[answers[0]["id"]] < pos[e["id"]]:
            bad.append(f"result for {e['id']} precedes the tool use")
        if text_of(answers[0]["content"]) != tool_result_text(e["input"]):
            bad.append(f"result for {e['id']} has the wrong content")

    # Per span: the response events sit inside their span, and each span holds exactly one
    # model response as scripted (so no half response and no second agent.message).
    got_spans = []
    for s0, s1 in pairs:
        inside = []
        for e in evs[s0 + 1:s1]:
            if e["type"] == "agent.message":
                inside.append(("agent.message", text_of(e["content"])))
            elif e["type"] == "agent.custom_tool_use":
                inside.append(("agent.custom_tool_use", e["name"], json.dumps(e["input"], sort_keys=True)))
            elif not e["type"].startswith(("session.", "agent.")):
                bad.append(f"{e['type']} {e['id']} logged inside a model request span")
        got_spans.append(inside)
    if got_spans != expected_spans(script):
        bad.append(f"span contents differ: got {got_spans}, want {expected_spans(script)}")
    outside = [e for i, e in enumerate(evs)
               if e["type"] in ("agent.message", "agent.custom_tool_use")
               and not any(a < i < b for a, b in pairs)]
    if outside:
        bad.append(f"agent events outside any span: {[e['id'] for e in outside]}")

    # Usage is counted once per response: the last session.usage equals the sum of spans.
    total_in = sum(e["model_usage"]["input_tokens"] for _, e in ends)
    total_out = sum(e["model_usage"]["output_tokens"] for _, e in ends)
    usages = [e for e in evs if e["type"] == "session.usage"]
    if len(usages) != len(ends):
        bad.append(f"{len(usages)} session.usage events for {len(ends)} responses")
    if usages and (usages[-1]["usage"]["input_tokens"], usages[-1]["usage"]["output_tokens"]) != (total_in, total_out):
        bad.append(f"last session.usage {usages[-1]['usage']} != span sum ({total_in}, {total_out})")
    return [f"{sid}: {b}" for b in bad]


def check_sqlite(db: Path, api_logs: dict[str, list[dict]]) -> list[str]:
    """Positions run 1..n with no gap per session and match the API's order."""
    bad = []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        for sid, evs in api_logs.items():
            rows = con.execute(
                "SELECT seq, id, type FROM events WHERE session_id = ? ORDER BY seq", (sid,)
            ).fetchall()
            seqs = [r[0] for r in rows]
            if seqs != list(range(1, len(rows) + 1)):
                bad.append(f"{sid}: positions are not 1..{len(rows)}: {seqs}")
            if [(r[1], r[2]) for r in rows] != [(e["id"], e["type"]) for e in evs]:
                bad.append(f"{sid}: stored order differs from the API's")
            head = con.execute("SELECT status, last_seq FROM sessions WHERE id = ?", (sid,)).fetchone()
            if head != ("idle", len(rows)):
                bad.append(f"{sid}: sessions row says {head}, log has {len(rows)} events")
    finally:
        con.close()
    return bad


def fetch_all_views(client: anthropic.Anthropic, sid: str) -> tuple[list[dict], list[str]]:
    """The log as raw JSON, plus the ways of reading it that must agree with each other."""
    bad = []
    evs = raw_events(client, sid)
    ids = [e["id"] for e in evs]
    again = [e["id"] for e in raw_events(client, sid)]
    if again != ids:
        bad.append(f"{sid}: two reads of the log differ")
    small_pages = [e["id"] for e in raw_events(client, sid, limit=3)]
    if small_pages != ids:
        bad.append(f"{sid}: paging with limit=3 gives another order")
    desc = [e["id"] for e in raw_events(client, sid, order="desc", limit=4)]
    if desc != ids[::-1]:
        bad.append(f"{sid}: order=desc is not the reverse of order=asc")
    sdk = [e.id for e in client.beta.sessions.events.list(sid, order="asc", limit=5)]
    if sdk != ids:
        bad.append(f"{sid}: the SDK's auto-paginated list differs from the raw list")
    return evs, bad


# --------------------------------------------------------------------------------------------
# Tests


def test_sigkill_storm_every_session_completes_with_a_clean_log(crash_server: Server):
    server = crash_server
    seed = int(os.environ.get("CRASH_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    print(f"\nCRASH_SEED={seed}")

    server.start()
    client = make_client(server)
    env = client.beta.environments.create(name="crash-env")
    agents = {
        name: client.beta.agents.create(name=f"crash agent {name}", model=f"scripted/{name}", tools=[LOOKUP_TOOL])
        for name in ("crash_a", "crash_b")
    }
    script_of: dict[str, str] = {}
    for i in range(N_SESSIONS):
        name = "crash_a" if i % 2 == 0 else "crash_b"
        s = client.beta.sessions.create(
            agent=agents[name].id,
            environment_id=env.id,
            title=f"crash {i}",
            initial_events=[{"type": "user.message", "content": [{"type": "text", "text": PROMPT}]}],
        )
        script_of[s.id] = name
    sids = list(script_of)

    driver = Driver(server, sids, random.Random(seed + 1))
    driver.start()
    kills: list[float] = []
    try:
        for _ in range(N_KILLS):
            time.sleep(rng.uniform(0.05, 0.4))
            kills.append(time.time())
            server.kill()
            server.start()

        deadline = time.monotonic() + FINISH_DEADLINE_S
        while time.monotonic() < deadline and len(driver.done) < len(sids) and not driver.errors:
            time.sleep(0.05)
    finally:
        driver.stop_evt.set()
        driver.join(timeout=10)

    assert not driver.errors, "tool executor saw errors:\n" + "\n".join(driver.errors)
    unfinished = {}
    for sid in sids:
        if sid not in driver.done:
            st = last_status(raw_events(client, sid))
            unfinished[sid] = st
    assert not unfinished, f"sessions did not finish within {FINISH_DEADLINE_S}s: {unfinished}\n{server.log_tail()}"

    failures: list[str] = []
    logs: dict[str, list[dict]] = {}
    for sid in sids:
        sess = client.beta.sessions.retrieve(sid)
        if sess.status != "idle":
            failures.append(f"{sid}: status {sess.status}")
        evs, bad = fetch_all_views(client, sid)
        failures += bad
        failures += check_log(sid, evs, script_of[sid])
        spans_in = sum(e["model_usage"]["input_tokens"] for e in evs if e["type"] == "span.model_request_end")
        if sess.usage.input_tokens != spans_in:
            failures.append(f"{sid}: session usage.input_tokens {sess.usage.input_tokens} != span sum {spans_in}")
        logs[sid] = evs

    server.stop()
    failures += check_sqlite(server.db_path, logs)

    # Where did the kills land? (From the logged timestamps; one clock on one machine.)
    mid_request = mid_tool = remade = 0
    for k in kills:
        in_request = in_tool = False
        for evs in logs.values():
            start_t = {e["id"]: ts(e["processed_at"]) for e in evs if e["type"] == "span.model_request_start"}
            for e in evs:
                if e["type"] == "span.model_request_end":
                    t1 = ts(e["processed_at"])
                    t0 = start_t.get(e["model_request_start_id"], t1)
                    if t0 < k < t1:
                        in_request = True
                        remade += 1
            result_t = {e["custom_tool_use_id"]: ts(e["processed_at"]) for e in evs if e["type"] == "user.custom_tool_result"}
            for e in evs:
                if e["type"] == "agent.custom_tool_use" and ts(e["processed_at"]) < k < result_t.get(e["id"], 0):
                    in_tool = True
        mid_request += in_request
        mid_tool += in_tool
    print(
        f"{len(kills)} kills, {server.starts} starts; kills during a model request: {mid_request}, "
        f"between a tool use and its result: {mid_tool}; request attempts cut short: {remade}; "
        f"tool results posted: {driver.posted}, posts lost to a kill: {driver.lost_posts}"
    )

    assert not failures, "\n".join(failures)
    # The run exercised what it claims to (else the schedule, not agentd, is at fault).
    assert mid_request >= 1 and mid_tool >= 1 and remade >= 1


def test_kill_while_the_model_streams_makes_the_response_again(crash_server: Server):
    server = crash_server
    server.start()
    client = make_client(server)
    env = client.beta.environments.create(name="stream-env")
    agent = client.beta.agents.create(name="streamer", model="scripted/crash_stream")
    sess = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    sid = sess.id

    # Round 1: watch the previews until the reply is part way out, then SIGKILL.
    stream = client.beta.sessions.events.stream(sid, event_deltas=["agent.message"])
    try:
        client.beta.sessions.events.send(
            sid, events=[{"type": "user.message", "content": [{"type": "text", "text": "Talk slowly."}]}]
        )
        preview1, got1 = None, ""
        for ev in stream:
            if ev.type == "event_start" and ev.event.type == "agent.message":
                preview1 = ev.event.id
            elif ev.type == "event_delta" and ev.event_id == preview1:
                got1 += ev.delta.content.text
                if len(got1) >= 3 * 8:
                    break
            elif ev.type == "agent.message":
                pytest.fail("the reply finished before the test could kill the server")
        kill1 = time.time()
        server.kill()
    finally:
        try:
            stream.close()
        except Exception:  # noqa: BLE001 - the server is gone
            pass
    assert preview1 is not None
    assert STREAM_TEXT.startswith(got1) and len(got1) < len(STREAM_TEXT)

    # Round 2: the restart resumes the open span at once. A stream opened after the restart
    # gets no previews of that attempt (agentd decides whether to publish previews when the
    # attempt starts), so kill by the clock instead: past the 400 ms pause, well inside the
    # 1.5 s of streaming, after checking in the log that the span is still open. (That the
    # kill beat the response is checked below from the logged timestamps.)
    server.start()
    time.sleep(0.8)
    evs = raw_events(client, sid)
    assert evs[-1]["type"] == "span.model_request_start", [e["type"] for e in evs]
    kill2 = time.time()
    server.kill()

    server.start()
    deadline = time.monotonic() + 20
    while True:
        evs = retrying(lambda: raw_events(client, sid), deadline)
        st = last_status(evs)
        if st and st["type"] == "session.status_idle":
            break
        assert time.monotonic() < deadline, f"session did not finish: {evs}"
        time.sleep(0.05)

    types = [e["type"] for e in evs]
    assert types == [
        "user.message",
        "session.status_running",
        "span.model_request_start",
        "agent.message",
        "span.model_request_end",
        "session.usage",
        "session.status_idle",
    ], types
    start, msg, end = evs[2], evs[3], evs[4]
    assert text_of(msg["content"]) == STREAM_TEXT
    assert end["model_request_start_id"] == start["id"] and end["is_error"] is False
    assert evs[-1]["stop_reason"]["type"] == "end_turn"
    # The half-streamed responses were dropped: their previewed ids were never logged, and
    # the logged message was made after the last kill, under the span opened before the first.
    ids = {e["id"] for e in evs}
    assert preview1 not in ids
    assert ts(start["processed_at"]) < kill1 < kill2 < ts(msg["processed_at"])
    assert len(ids) == len(evs)

    # A stream resumed after the first event replays the rest of the log, once.
    replay = []
    replay_stream = client.beta.sessions.events.stream(
        sid, extra_headers={"Last-Event-ID": evs[0]["id"]}
    )
    try:
        for ev in replay_stream:
            replay.append(ev.id)
            if ev.type == "session.status_idle":
                break
    finally:
        replay_stream.close()
    assert replay == [e["id"] for e in evs[1:]]

    server.stop()
    assert check_sqlite(server.db_path, {sid: evs}) == []


def test_a_tool_result_resent_after_a_crash_is_not_logged_twice(crash_server: Server):
    server = crash_server
    server.start()
    client = make_client(server)
    env = client.beta.environments.create(name="resend-env")
    agent = client.beta.agents.create(name="resend", model="scripted/crash_a", tools=[LOOKUP_TOOL])
    sid = client.beta.sessions.create(
        agent=agent.id,
        environment_id=env.id,
        initial_events=[{"type": "user.message", "content": [{"type": "text", "text": PROMPT}]}],
    ).id
    deadline = time.monotonic() + 10
    while True:
        st = last_status(raw_events(client, sid))
        if st and st["type"] == "session.status_idle":
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert st["stop_reason"]["type"] == "requires_action"
    use_id = st["stop_reason"]["event_ids"][0]
    result = {
        "type": "user.custom_tool_result",
        "custom_tool_use_id": use_id,
        "content": [{"type": "text", "text": tool_result_text({"q": "alpha"})}],
    }
    # The first POST is stored, then the server dies before its response leaves.
    client.beta.sessions.events.send(sid, events=[result])
    server.kill()
    server.start()
    # The SDK's retry of the same POST reaches the new process.
    try:
        client.beta.sessions.events.send(sid, events=[result])
    except (anthropic.BadRequestError, anthropic.ConflictError):
        pass  # refusing the repeat is fine: the log stays clean
    answers = [e for e in raw_events(client, sid)
               if e["type"] == "user.custom_tool_result" and e["custom_tool_use_id"] == use_id]
    assert len(answers) == 1, f"{len(answers)} results logged for tool use {use_id}"
