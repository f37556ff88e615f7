"""Moving an installation from SQLite to PostgreSQL, as an operator would: `agentd db copy`
between two runs of `agentd serve`, then the same sessions through the SDK on PostgreSQL.

Needs AGENTD_TEST_POSTGRES_URL (./scripts/test.sh starts a throwaway server); skipped
without it. Each test makes its own databases with psql.
"""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from conftest import list_raw_events, make_agent, make_env, send_text, wait_idle

ADMIN = os.environ.get("AGENTD_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(not ADMIN, reason="needs AGENTD_TEST_POSTGRES_URL")


def new_database() -> str:
    name = f"copy_{secrets.token_hex(6)}"
    subprocess.run(["psql", ADMIN, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    return ADMIN.rsplit("/", 1)[0] + "/" + name


def copy(agentd_bin, source, target):
    return subprocess.run(
        [str(agentd_bin), "db", "copy", "--from", f"sqlite:{source}", "--to", target],
        capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")},
    )


def test_db_copy_moves_sessions_to_postgres_and_refuses_a_full_target(server_factory, agentd_bin, tmp_path):
    data = tmp_path / "sqlite-home"
    before = server_factory(data_dir=data, env={"AGENTD_DATABASE_URL": ""})
    client = before.client()
    agent = make_agent(client)
    env = make_env(client)
    sid = client.beta.sessions.create(agent=agent.id, environment_id=env.id).id
    send_text(client, sid, "hello from sqlite")
    wait_idle(client, sid)
    events = list_raw_events(client, sid)
    assert len(events) >= 4
    before.stop()

    target = new_database()
    done = copy(agentd_bin, data / "agentd.db", target)
    assert done.returncode == 0, done.stderr
    assert "events\t" in done.stdout, done.stdout
    assert "password" not in done.stderr

    after = server_factory(data_dir=tmp_path / "pg-home", key=before.key, env={"AGENTD_DATABASE_URL": target})
    moved = after.client()
    assert list_raw_events(moved, sid) == events
    assert moved.beta.agents.retrieve(agent.id).name == agent.name
    send_text(moved, sid, "hello from postgres")
    wait_idle(moved, sid, count=2)
    texts = [e["content"][0]["text"] for e in list_raw_events(moved, sid) if e["type"] == "agent.message"]
    assert texts == ["echo: hello from sqlite", "echo: hello from postgres"]

    again = copy(agentd_bin, data / "agentd.db", target)
    assert again.returncode != 0
    assert "not empty" in again.stderr, again.stderr


def test_an_unreachable_database_is_a_clear_error(agentd_bin, tmp_path):
    r = subprocess.run(
        [str(agentd_bin), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path),
         "--database-url", "postgres://agentd:hunter2@127.0.0.1:1/agentd", "--database-wait-secs", "1"],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("AGENTD_")},
    )
    assert r.returncode != 0
    assert "cannot reach PostgreSQL at postgres://agentd:***@127.0.0.1:1/agentd" in r.stderr, r.stderr
    assert "hunter2" not in r.stderr
