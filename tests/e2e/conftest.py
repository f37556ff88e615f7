"""End-to-end fixtures: the real `agentd` binary, driven over loopback HTTP by the official
Python SDK (`anthropic==2.10.0`). Only the model upstream is fake (fake_anthropic.py), or
agentd's built-in scripted models are used.

Fixtures
--------
agentd_bin      (session)  Path of the binary: $AGENTD_BIN, else /work/main/target/debug/agentd.
                           Built once with `cargo build -p agentd` when it is missing or when
                           AGENTD_E2E_BUILD=1.
fake_upstream   (function) A started `FakeAnthropic`; script it with .enqueue() / .handler /
                           .default, inspect .requests. Closed at teardown.
scripts_dir     (function) A temp dir used as AGENTD_SCRIPTS_DIR by servers from
                           `server_factory`; `write_script(scripts_dir, name, yaml)` returns the
                           model id "scripted/<name>" (scripts may be written after start).
server_factory  (function) `server_factory(**opts) -> AgentdServer`; see AgentdServer.__init__
                           for opts (upstream, rate_limit, model_attempts, retry_base_ms, env,
                           data_dir, ...). Every server it started is SIGKILLed at teardown;
                           a failed test prints the tail of each server's log. As root, the
                           test's temp dirs are opened to traversal (o+x) so agentd keeps its
                           sandboxes inside the data dir, not in /var/lib/agentd.
server          (function) `server_factory(upstream=fake_upstream)`: rate limit off, 20 ms retry
                           base, 3 model attempts.
client, aclient (function) Sync / async SDK clients of `server` with max_retries=0
                           (async tests are marked @pytest.mark.asyncio; strict mode).

Backends: with AGENTD_E2E_DATABASE=postgres, each data dir gets a fresh database on the server
AGENTD_TEST_POSTGRES_URL names (made with psql), passed to agentd as AGENTD_DATABASE_URL; every
test then runs on PostgreSQL. Without it, agentd uses its embedded SQLite file.

AgentdServer (a handle on one agentd process)
    .url .key .port .data_dir .scripts_dir .log_path .proc
    .client(**kw) / .async_client(**kw)   SDK clients (max_retries=0, timeout 15 s by default)
    .kill()      SIGKILL, wait for exit (a crash: nothing is flushed or shut down)
    .stop()      SIGTERM, wait for a graceful exit
    .restart()   start again on the same data dir, port and key (after kill/stop); returns self
    .alive       whether the process runs
    .log()       everything the process(es) wrote to stderr so far
    .create_key(workspace) -> str   `agentd keys create --workspace W` on this data dir

Helpers (plain functions; `from conftest import ...`)
    make_agent(client, model="scripted/echo", **kw) / make_env(client, **kw)
    user_message(text) -> event param;  send_text(client, session_id, text)
    list_raw_events(client, sid, **list_params)   every event as raw JSON (SDK with_raw_response)
    all_pages(raw_list, *args, **params)   every item of any SDK with_raw_response.list, paged
    wait_until(pred, timeout) / wait_status(client, sid, "idle") / wait_events(client, sid, pred)
    wait_idle(client, sid, count=1)   until the count-th session.status_idle is the last event
    types_of(events), idle_count(events), is_idle(item)
    raw_request(server, method, path, key=..., json_body=..., content=...)   plain httpx2
    validate_event(raw) / validate_model(Type, raw)   strict: SDK types + no undeclared fields
    collect_stream(stream, until) / acollect_stream(stream, until)   read an SDK stream, bounded
    write_script(scripts_dir, name, yaml) -> "scripted/<name>"

Every wait polls with a timeout; nothing sleeps for a fixed time to let the server catch up.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import anthropic
import httpx2
import pydantic
import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_anthropic import FakeAnthropic  # noqa: E402
import fake_anthropic as _fa  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "target" / "debug" / "agentd"
# Only a complete line counts: the log is read while agentd may be half way through writing it.
READY_RE = re.compile(r"agentd: listening on http://(\S+:\d+) .*\n")
DEFAULT_TIMEOUT = 15.0


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # This suite has no ini file of its own; give pytest-asyncio its loop scope explicitly
    # (tests are marked @pytest.mark.asyncio, strict mode).
    if not config.getini("asyncio_default_fixture_loop_scope"):
        config._inicache["asyncio_default_fixture_loop_scope"] = "function"


# ----------------------------------------------------------------------------- binary


@pytest.fixture(scope="session")
def agentd_bin() -> Path:
    env_bin = os.environ.get("AGENTD_BIN")
    if env_bin:
        p = Path(env_bin)
        if not p.is_file():
            pytest.exit(f"AGENTD_BIN={env_bin} does not exist", returncode=2)
        return p
    if not DEFAULT_BIN.is_file() or os.environ.get("AGENTD_E2E_BUILD") == "1":
        r = subprocess.run(["cargo", "build", "-p", "agentd"], cwd=REPO, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.exit(f"cargo build -p agentd failed:\n{r.stderr[-4000:]}", returncode=2)
    return DEFAULT_BIN


# ----------------------------------------------------------------------------- server


_DATABASES: dict = {}


def database_url(data_dir: Path) -> Optional[str]:
    """The PostgreSQL database of `data_dir` when the suite runs on PostgreSQL, made on first use."""
    if os.environ.get("AGENTD_E2E_DATABASE", "sqlite") != "postgres":
        return None
    admin = os.environ.get("AGENTD_TEST_POSTGRES_URL")
    if not admin:
        pytest.exit("AGENTD_E2E_DATABASE=postgres needs AGENTD_TEST_POSTGRES_URL", returncode=2)
    key = str(Path(data_dir).resolve())
    if key not in _DATABASES:
        name = f"e2e_{secrets.token_hex(6)}"
        subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
        _DATABASES[key] = admin.rsplit("/", 1)[0] + "/" + name
    return _DATABASES[key]


class AgentdServer:
    """One agentd process (and its restarts) on a data dir."""

    def __init__(
        self,
        binary: Path,
        data_dir: Path,
        *,
        scripts_dir: Optional[Path] = None,
        upstream: Optional[FakeAnthropic] = None,
        upstream_url: Optional[str] = None,
        anthropic_api_key: Optional[str] = "sk-ant-fake-upstream-key",
        key: Optional[str] = None,
        rate_limit: float = 0,
        model_attempts: Optional[int] = 3,
        retry_base_ms: Optional[int] = 20,
        env: Optional[dict] = None,
        port: int = 0,
        log: str = "info",
    ) -> None:
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.scripts_dir = Path(scripts_dir) if scripts_dir else self.data_dir / "scripts"
        self.scripts_dir.mkdir(parents=True, exist_ok=True)
        self.key = key or f"sk-e2e-{secrets.token_hex(12)}"
        self.port = port
        self.url = ""
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.agentd.log"
        self.proc: Optional[subprocess.Popen] = None
        self._clients: list = []
        base = {k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")}
        base.update({
            "AGENTD_API_KEY": self.key,
            "AGENTD_SCRIPTS_DIR": str(self.scripts_dir),
            "AGENTD_RATE_LIMIT": str(rate_limit),
            "AGENTD_LOG": log,
            "NO_COLOR": "1",
        })
        url = upstream.base_url if upstream is not None else upstream_url
        if url:
            base["AGENTD_ANTHROPIC_BASE_URL"] = url
            if anthropic_api_key:
                base["AGENTD_ANTHROPIC_API_KEY"] = anthropic_api_key
        if model_attempts is not None:
            base["AGENTD_MODEL_ATTEMPTS"] = str(model_attempts)
        if retry_base_ms is not None:
            base["AGENTD_RETRY_BASE_MS"] = str(retry_base_ms)
        db = database_url(self.data_dir)
        if db:
            base["AGENTD_DATABASE_URL"] = db
        base.update(env or {})
        self.env = base

    # lifecycle -------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> "AgentdServer":
        assert not self.alive, "already running"
        with open(self.log_path, "ab") as f:
            start_offset = f.tell()
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [str(self.binary), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)],
                env=self.env, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
            )
        finally:
            logf.close()
        deadline = time.monotonic() + timeout
        while True:
            text = self._read_log(start_offset)
            m = READY_RE.search(text)
            if m:
                addr = m.group(1)
                self.port = int(addr.rsplit(":", 1)[1])
                self.url = f"http://{addr}"
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"agentd exited with {self.proc.returncode} before listening:\n{text[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"agentd did not listen within {timeout}s:\n{text[-3000:]}")
            time.sleep(0.01)

    def _read_log(self, offset: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log(self) -> str:
        return self._read_log(0)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def restart(self, timeout: float = 20.0) -> "AgentdServer":
        """Start again on the same data dir, port and key; the process must be down."""
        if self.alive:
            raise RuntimeError("restart() needs the server down: call kill() or stop() first")
        deadline = time.monotonic() + timeout
        while True:  # the port may linger briefly after a kill
            try:
                return self.start(timeout=max(1.0, deadline - time.monotonic()))
            except RuntimeError as e:
                if "cannot listen" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    # clients ---------------------------------------------------------------
    def client(self, key: Optional[str] = None, **kw: Any) -> anthropic.Anthropic:
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", DEFAULT_TIMEOUT)
        c = anthropic.Anthropic(base_url=self.url, api_key=key or self.key, **kw)
        self._clients.append(c)
        return c

    def async_client(self, key: Optional[str] = None, **kw: Any) -> anthropic.AsyncAnthropic:
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", DEFAULT_TIMEOUT)
        return anthropic.AsyncAnthropic(base_url=self.url, api_key=key or self.key, **kw)

    def create_key(self, workspace: str) -> str:
        r = subprocess.run(
            [str(self.binary), "keys", "create", "--workspace", workspace, "--data-dir", str(self.data_dir)],
            env=self.env, capture_output=True, text=True, timeout=30,
        )
        assert r.returncode == 0, r.stderr
        key = r.stdout.strip().splitlines()[-1].strip()
        assert key, r.stderr
        return key

    def close(self) -> None:
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self.kill()
        _unmount_workspaces(self.data_dir)


def _unmount_workspaces(data_dir: Path) -> None:
    """As root, each workspace is a loop-mounted filesystem that outlives agentd (until its
    session is deleted); a test's server is killed, so take its mounts down with it, or its
    temp dir could not be removed and the loop devices would pile up."""
    top = str(Path(data_dir).resolve())
    with open("/proc/self/mountinfo") as f:
        points = [line.split(" ")[4] for line in f]
    for p in points:
        if p == top or p.startswith(top + "/"):
            subprocess.run(["umount", "--lazy", p], capture_output=True)


@pytest.fixture
def fake_upstream():
    fake = FakeAnthropic().start()
    yield fake
    fake.close()


@pytest.fixture
def scripts_dir(tmp_path: Path) -> Path:
    d = tmp_path / "scripts"
    d.mkdir()
    return d


def _let_sandboxes_reach(tmp_path: Path) -> None:
    """As root, agentd runs sandboxes as `nobody` and keeps them in the data dir only if others
    can traverse every ancestor; otherwise it uses /var/lib/agentd/sandboxes/<hash>, which
    would outlive the test. pytest makes its temp dirs 0700: open the ones below the system
    temp dir to traversal (o+x, no listing)."""
    top = Path(tempfile.gettempdir()).resolve()
    here = tmp_path.resolve()
    if os.geteuid() != 0 or top not in here.parents:
        return
    for p in [here, *here.parents]:
        if p == top:
            break
        mode = p.stat().st_mode
        if not mode & 0o001:
            os.chmod(p, (mode & 0o7777) | 0o001)


@pytest.fixture
def server_factory(agentd_bin: Path, tmp_path: Path, scripts_dir: Path, request):
    started: list[AgentdServer] = []
    counter = [0]
    _let_sandboxes_reach(tmp_path)

    def start(**opts: Any) -> AgentdServer:
        counter[0] += 1
        data_dir = opts.pop("data_dir", None) or tmp_path / f"agentd{counter[0]}"
        opts.setdefault("scripts_dir", scripts_dir)
        s = AgentdServer(agentd_bin, data_dir, **opts)
        started.append(s)
        return s.start()

    yield start
    for s in started:
        s.close()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for s in started:
            tail = s.log()[-4000:]
            sys.stderr.write(f"\n----- agentd log ({s.log_path}) -----\n{tail}\n")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def server(server_factory, fake_upstream) -> AgentdServer:
    return server_factory(upstream=fake_upstream)


@pytest.fixture
def client(server: AgentdServer) -> anthropic.Anthropic:
    return server.client()


@pytest_asyncio.fixture
async def aclient(server: AgentdServer):
    c = server.async_client()
    yield c
    await c.close()


# ----------------------------------------------------------------------------- helpers


def write_script(scripts_dir: Path, name: str, yaml_text: str) -> str:
    """Write `<scripts_dir>/<name>.yaml` and return the model id `scripted/<name>`."""
    (Path(scripts_dir) / f"{name}.yaml").write_text(yaml_text)
    return f"scripted/{name}"


def make_agent(client: anthropic.Anthropic, model: str = "scripted/echo", **kw: Any):
    kw.setdefault("name", f"agent-{secrets.token_hex(3)}")
    return client.beta.agents.create(model=model, **kw)


def make_env(client: anthropic.Anthropic, **kw: Any):
    kw.setdefault("name", f"env-{secrets.token_hex(3)}")
    return client.beta.environments.create(**kw)


def user_message(text: str) -> dict:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def send_text(client: anthropic.Anthropic, session_id: str, text: str):
    return client.beta.sessions.events.send(session_id, events=[user_message(text)])


def all_pages(raw_list: Callable[..., Any], *args: Any, **params: Any) -> list:
    """Every item of a cursor-paged list as raw JSON dicts, following `next_page`; `raw_list` is
    an SDK `with_raw_response.list` method, called with `args` and `params`."""
    out: list = []
    page = None
    for _ in range(10_000):
        kw = dict(params)
        if page:
            kw["page"] = page
        body = raw_list(*args, **kw).json()
        out.extend(body["data"])
        page = body.get("next_page")
        if not page:
            return out
    raise AssertionError("pagination did not end")


def list_raw_events(client: anthropic.Anthropic, session_id: str, **params: Any) -> list:
    """Every event of the session as raw JSON dicts, following `next_page` cursors."""
    params.setdefault("limit", 1000)
    return all_pages(client.beta.sessions.events.with_raw_response.list, session_id, **params)


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_status(client: anthropic.Anthropic, session_id: str, status: str = "idle", timeout: float = 10.0):
    def check():
        s = client.beta.sessions.retrieve(session_id)
        return s if s.status == status else None
    return wait_until(check, timeout, what=f"session {session_id} to be {status}")


def wait_events(client: anthropic.Anthropic, session_id: str, pred: Callable[[list], bool],
                timeout: float = 10.0, what: str = "events") -> list:
    """Poll the raw event list until `pred(events)` holds; returns the events."""
    def check():
        evs = list_raw_events(client, session_id)
        return evs if pred(evs) else None
    return wait_until(check, timeout, what=f"{what} in session {session_id}")


def idle_count(events: list) -> int:
    return sum(1 for e in events if e["type"] == "session.status_idle")


def wait_idle(client: anthropic.Anthropic, session_id: str, count: int = 1, timeout: float = 10.0) -> list:
    """Wait until the session logged at least `count` session.status_idle events and its status is
    idle; return all events (raw)."""
    def check():
        evs = list_raw_events(client, session_id)
        if idle_count(evs) >= count and evs[-1]["type"] == "session.status_idle":
            return evs
        return None
    evs = wait_until(check, timeout, what=f"idle #{count} of session {session_id}")
    assert client.beta.sessions.retrieve(session_id).status == "idle"
    return evs


def types_of(events: Iterable) -> list:
    return [e["type"] if isinstance(e, dict) else e.type for e in events]


def raw_request(server: AgentdServer, method: str, path: str, *, key: Optional[str] = "default",
                json_body: Any = None, content: Optional[bytes] = None, headers: Optional[dict] = None,
                timeout: float = 30.0) -> httpx2.Response:
    """A plain HTTP request (httpx2, the SDK's transport) for what the SDK cannot send."""
    h = {"anthropic-version": "2023-06-01", "anthropic-beta": "managed-agents-2026-04-01"}
    if key == "default":
        key = server.key
    if key:
        h["x-api-key"] = key
    if json_body is not None:
        content = json.dumps(json_body).encode()
        h["content-type"] = "application/json"
    h.update(headers or {})
    with httpx2.Client(timeout=timeout) as c:
        return c.request(method, server.url + path, content=content, headers=h)


# ----------------------------------------------------------------------------- strict validation

_EVENT_ADAPTER = None


def _unknown_fields(obj: Any, path: str = "") -> list:
    """Fields the SDK's models do not declare (they land in `__pydantic_extra__`), recursively."""
    out = []
    if isinstance(obj, pydantic.BaseModel):
        for k in (obj.__pydantic_extra__ or {}):
            out.append(f"{path}.{k}" if path else k)
        for name in type(obj).model_fields:
            out.extend(_unknown_fields(getattr(obj, name), f"{path}.{name}" if path else name))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.extend(_unknown_fields(v, f"{path}[{i}]"))
    return out


def validate_event(raw: dict, allow_extra: bool = False):
    """Validate one raw event exactly as the SDK's types declare it: required fields, literal
    types, discriminators; and (unless allow_extra) no fields the types do not declare."""
    global _EVENT_ADAPTER
    from anthropic.types.beta.sessions import BetaManagedAgentsSessionEvent
    if _EVENT_ADAPTER is None:
        _EVENT_ADAPTER = pydantic.TypeAdapter(BetaManagedAgentsSessionEvent)
    ev = _EVENT_ADAPTER.validate_python(raw)
    assert ev.type == raw["type"], f"validated as {type(ev).__name__}, raw type {raw['type']}"
    if not allow_extra:
        extra = _unknown_fields(ev)
        assert not extra, f"{raw['type']} carries fields the SDK does not declare: {extra}: {raw}"
    return ev


def validate_model(model_type: Any, raw: dict, allow_extra: bool = False):
    obj = pydantic.TypeAdapter(model_type).validate_python(raw)
    if not allow_extra:
        extra = _unknown_fields(obj)
        assert not extra, f"{getattr(model_type, '__name__', model_type)} has undeclared fields {extra}"
    return obj


# ----------------------------------------------------------------------------- streams


def collect_stream(stream, until: Callable[[Any, list], bool], timeout: float = 10.0) -> list:
    """Read SDK stream items until `until(item, items_so_far)` is true; closes the stream.
    A read blocks at most the client's read timeout, so the overall wait is bounded too."""
    items: list = []
    deadline = time.monotonic() + timeout
    try:
        for item in stream:
            items.append(item)
            if until(item, items):
                return items
            if time.monotonic() > deadline:
                raise AssertionError(f"stream condition not met within {timeout}s; got {types_of(items)}")
        raise AssertionError(f"stream ended before the condition held; got {types_of(items)}")
    finally:
        stream.close()


async def acollect_stream(stream, until: Callable[[Any, list], bool], timeout: float = 10.0) -> list:
    import asyncio
    items: list = []

    async def run():
        async for item in stream:
            items.append(item)
            if until(item, items):
                return
        raise AssertionError(f"stream ended before the condition held; got {types_of(items)}")

    try:
        await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"stream condition not met within {timeout}s; got {types_of(items)}")
    finally:
        await stream.close()
    return items


def is_idle(item: Any, _items: list = ()) -> bool:
    return getattr(item, "type", None) == "session.status_idle"


def run_bash_turn(client: anthropic.Anthropic, upstream: FakeAnthropic, session_id: str, command: str,
                  turn: int, timeout: float = 60.0) -> tuple[str, bool]:
    """Turn number `turn` of the session, whose model runs `command` with the bash tool and then
    answers; the tool result's text and whether it is an error."""
    upstream.enqueue(_fa.message(_fa.tool_use("bash", {"command": command})), _fa.reply_text("done"))
    send_text(client, session_id, f"turn {turn}")
    evs = wait_idle(client, session_id, count=turn, timeout=timeout)
    result = [e for e in evs if e["type"] == "agent.tool_result"][-1]
    return "".join(b.get("text", "") for b in result["content"]), bool(result.get("is_error"))
