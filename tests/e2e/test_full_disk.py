"""A full disk under the database, on SQLite and on PostgreSQL: writes get 503 with
Retry-After (the SDK's retryable class), reads go on, nothing stored is lost, and once space
is freed the same sessions carry on with one answer per accepted message.

The disk is a small tmpfs mounted for the test, so these need root (CI runs as root); the
PostgreSQL one also needs the test server on this machine (a tablespace on that tmpfs).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from pathlib import Path

import anthropic
import pytest

from conftest import list_raw_events, make_agent, make_env, send_text, wait_idle, wait_until

ADMIN = os.environ.get("AGENTD_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem needs root")


@contextlib.contextmanager
def small_disk(path: Path, mib: int, owner: str | None = None):
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m,mode=0711", "tmpfs", str(path)], check=True)
    if owner:
        subprocess.run(["chown", owner, str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    return filler


def write_until_refused(client, sid) -> tuple[anthropic.APIStatusError, int]:
    """Send messages until the disk refuses one; the refusal and how many were accepted."""
    for i in range(500):
        try:
            send_text(client, sid, f"while full {i} " + "x" * 2000)
        except anthropic.APIStatusError as e:
            return e, i
    raise AssertionError("500 messages fitted on a full disk")


def check_full_disk_cycle(server, disk: Path):
    client = server.client()
    agent = make_agent(client)
    env = make_env(client)
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    send_text(client, sid, "before")
    wait_idle(client, sid)
    stored = list_raw_events(client, sid)

    filler = fill(disk)
    refused, accepted = write_until_refused(client, sid)
    assert refused.status_code == 503, refused
    assert refused.response.headers.get("retry-after"), refused.response.headers
    body = refused.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error", body
    # Reads go on, and what was stored before is all there.
    assert [e["id"] for e in list_raw_events(client, sid)][: len(stored)] == [e["id"] for e in stored]
    # Another write may still fit in a page the database had free; if not, it is a 503 too.
    try:
        client.beta.sessions.create(agent=agent.id, environment_id=env.id)
    except anthropic.APIStatusError as e:
        assert e.status_code == 503, e

    filler.unlink()
    send_text(client, sid, "after")

    def settled():
        evs = list_raw_events(client, sid)
        types = [e["type"] for e in evs]
        asked = max(i for i, e in enumerate(evs) if e["type"] == "user.message")
        # Messages that arrived during a turn are answered together after it.
        answered = "agent.message" in types[asked:]
        return evs if types[-1] == "session.status_idle" and answered else None

    evs = wait_until(settled, 60, what="the session answered once space was back")
    texts = [e["content"][0]["text"] for e in evs if e["type"] == "user.message"]
    assert texts[0] == "before" and texts[-1] == "after"
    assert len(texts) == accepted + 2, "every message the API accepted is in the log, once"
    ids = [e["id"] for e in evs]
    assert len(ids) == len(set(ids))
    # And the server takes new work again.
    other = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    send_text(client, other, "new")
    wait_idle(client, other, timeout=30)


def test_a_full_disk_under_sqlite_is_a_503_and_recovers(server_factory, tmp_path):
    with small_disk(tmp_path / "small", 24) as disk:
        # Only the database on the small disk: the server's own log stays readable.
        server = server_factory(env={"AGENTD_DATABASE_URL": f"sqlite:{disk / 'agentd.db'}",
                                     "AGENTD_SANDBOX": "none"})
        try:
            check_full_disk_cycle(server, disk)
        finally:
            server.kill()


@pytest.mark.skipif(not ADMIN or "@127.0.0.1:" not in (ADMIN or ""), reason="needs a local AGENTD_TEST_POSTGRES_URL")
def test_a_full_disk_under_postgres_is_a_503_and_recovers(server_factory, tmp_path):
    name = f"full_{secrets.token_hex(4)}"
    psql = lambda sql: subprocess.run(["psql", ADMIN, "-qc", sql], check=True, capture_output=True)  # noqa: E731
    with small_disk(tmp_path / "pgspace", 40, owner="postgres") as disk:
        (disk / "ts").mkdir()
        subprocess.run(["chown", "postgres", str(disk / "ts")], check=True)
        psql(f"CREATE TABLESPACE {name} LOCATION '{disk / 'ts'}'")
        try:
            psql(f"CREATE DATABASE {name} TABLESPACE {name}")
            url = ADMIN.rsplit("/", 1)[0] + "/" + name
            server = server_factory(env={"AGENTD_DATABASE_URL": url, "AGENTD_SANDBOX": "none"})
            try:
                check_full_disk_cycle(server, disk)
            finally:
                server.kill()
        finally:
            subprocess.run(["psql", ADMIN, "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)
            subprocess.run(["psql", ADMIN, "-qc", f"DROP TABLESPACE IF EXISTS {name}"], capture_output=True)
