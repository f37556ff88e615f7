"""Session resources through the official SDK: `file` resources on session create and through
`/v1/sessions/{id}/resources` (add, list, retrieve, update, delete), mounted read-only in the
session's sandbox when it is provisioned, at the SDK's default path or the one asked for.
Bad input gets the error the SDK expects, naming the field, and changes nothing."""

import time

import anthropic
import pytest

import fake_anthropic as fa
from conftest import list_raw_events, send_text, validate_model, wait_idle, run_bash_turn

CLAUDE = "claude-sonnet-4-6"
TOOLSET = [{"type": "agent_toolset_20260401",
            "default_config": {"enabled": True, "permission_policy": {"type": "always_allow"}}}]


def upload(client, name: str, data: bytes, mime: str = "text/plain"):
    return client.beta.files.upload(file=(name, data, mime))


def session_with(client, resources):
    env = client.beta.environments.create(name="res")
    agent = client.beta.agents.create(name="reader", model=CLAUDE, tools=TOOLSET)
    return client.beta.sessions.create(agent=agent.id, environment_id=env.id, resources=resources)


def run_bash(client, fake_upstream, sid: str, command: str, turn: int) -> str:
    return run_bash_turn(client, fake_upstream, sid, command, turn)[0]


def test_file_resources_are_mounted_read_only_where_asked(client, fake_upstream):
    csv = upload(client, "data.csv", b"a,b\n1,2\n", "text/csv")
    notes = upload(client, "notes.txt", b"remember the milk\n")
    s = session_with(client, [{"type": "file", "file_id": csv.id}])
    assert len(s.resources) == 1
    r = s.resources[0]
    assert (r.type, r.file_id, r.mount_path) == ("file", csv.id, f"/mnt/session/uploads/{csv.id}")
    assert r.id.startswith("sesrsc_")
    raw = client.beta.sessions.resources.with_raw_response.retrieve(r.id, session_id=s.id).json()
    validate_model(anthropic.types.beta.sessions.BetaManagedAgentsSessionResource, raw)

    out = run_bash(client, fake_upstream, s.id,
                   f"cat /mnt/session/uploads/{csv.id}; {{ echo x > /mnt/session/uploads/{csv.id}; }} 2>&1; echo rc=$?", 1)
    assert "a,b\n1,2" in out and "Read-only file system" in out and "rc=1" in out, out

    added = client.beta.sessions.resources.add(s.id, type="file", file_id=notes.id, mount_path="/data/in/notes.txt")
    assert added.mount_path == "/data/in/notes.txt"
    listed = client.beta.sessions.resources.list(s.id)
    assert [x.id for x in listed.data] == [r.id, added.id]
    assert client.beta.sessions.retrieve(s.id).resources[1].id == added.id
    out = run_bash(client, fake_upstream, s.id, "cat /data/in/notes.txt; ls /mnt/session/uploads", 2)
    assert "remember the milk" in out and csv.id in out, out

    gone = client.beta.sessions.resources.delete(added.id, session_id=s.id)
    assert (gone.id, gone.type) == (added.id, "session_resource_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.resources.retrieve(added.id, session_id=s.id)
    out = run_bash(client, fake_upstream, s.id, "cat /data/in/notes.txt 2>&1; echo rc=$?", 3)
    assert "remember the milk" not in out and "rc=1" in out, out
    # The file itself is untouched in the Files API.
    assert client.beta.files.download(notes.id).read() == b"remember the milk\n"


def test_resources_are_fetched_only_when_a_tool_needs_the_sandbox(client, fake_upstream):
    f = upload(client, "x.txt", b"x")
    s = session_with(client, [{"type": "file", "file_id": f.id}])
    fake_upstream.enqueue(fa.reply_text("no tools needed"))
    send_text(client, s.id, "hello")
    evs = wait_idle(client, s.id, timeout=20)
    assert "agent.tool_use" not in [e["type"] for e in evs]
    # Deleting the file before any tool call breaks nothing: nothing was mounted yet.
    client.beta.files.delete(f.id)
    out = run_bash(client, fake_upstream, s.id, f"ls /mnt/session/uploads/{f.id} 2>&1; echo rc=$?", 2)
    assert "rc=" in out, out


def test_bad_resources_are_refused_naming_the_field(client):
    f = upload(client, "x.txt", b"x")
    env = client.beta.environments.create(name="res")
    agent = client.beta.agents.create(name="a", model=CLAUDE, tools=TOOLSET)

    def create(resources):
        return client.beta.sessions.create(agent=agent.id, environment_id=env.id, resources=resources)

    before = len(client.beta.sessions.list().data)
    with pytest.raises(anthropic.NotFoundError) as e:
        create([{"type": "file", "file_id": "file_missing"}])
    assert e.value.body["error"]["message"].startswith("resources[0].file_id:")
    for bad, field in [
        ({"type": "file", "file_id": f.id, "mount_path": "relative.txt"}, "resources[0].mount_path:"),
        ({"type": "file", "file_id": f.id, "mount_path": "/etc/passwd"}, "resources[0].mount_path:"),
        ({"type": "file", "file_id": f.id, "mount_path": "/workspace/../x"}, "resources[0].mount_path:"),
        ({"type": "file", "file_id": f.id, "mount_path": "/workspace/in/x"}, "resources[0].mount_path:"),
        ({"type": "file"}, "resources[0]"),
        ({"type": "nope", "file_id": f.id}, "resources[0].type:"),
        ({"type": "github_repository", "url": "https://example.com/r.git", "mount_path": "/data/r"},
         "resources[0].mount_path:"),
    ]:
        with pytest.raises(anthropic.BadRequestError) as e:
            create([bad])
        assert e.value.body["error"]["message"].startswith(field), (bad, e.value.body)
    with pytest.raises(anthropic.BadRequestError) as e:
        create([{"type": "file", "file_id": f.id, "mount_path": "/data/a"},
                {"type": "file", "file_id": f.id, "mount_path": "/data/a"}])
    assert e.value.body["error"]["message"].startswith("resources[1].mount_path:")
    assert len(client.beta.sessions.list().data) == before, "nothing was created"

    s = create([{"type": "file", "file_id": f.id, "mount_path": "/data/a"}])
    r = s.resources[0]
    with pytest.raises(anthropic.BadRequestError) as e:
        client.beta.sessions.resources.add(s.id, type="file", file_id=f.id, mount_path="/data/a")
    assert e.value.body["error"]["message"].startswith("mount_path:")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.resources.add(s.id, type="file", file_id="file_missing")
    with pytest.raises(anthropic.BadRequestError) as e:
        client.beta.sessions.resources.update(r.id, session_id=s.id, authorization_token="t")
    assert e.value.body["error"]["message"].startswith("authorization_token:")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.resources.delete("sesrsc_missing", session_id=s.id)
    assert [x.id for x in client.beta.sessions.resources.list(s.id)] == [r.id], "nothing changed"


def test_a_resource_added_mid_call_lets_the_call_finish_and_the_next_call_sees_it(client, fake_upstream):
    f = upload(client, "late.txt", b"arrived late\n")
    s = session_with(client, [])
    fake_upstream.enqueue(fa.message(fa.tool_use("bash", {"command": "sleep 3; echo finished"})),
                          fa.reply_text("done"))
    send_text(client, s.id, "turn 1")
    # Wait until the command runs, then add the resource under it.
    from conftest import wait_until
    wait_until(lambda: "agent.tool_use" in [e["type"] for e in list_raw_events(client, s.id)], timeout=15,
               what="the call")
    time.sleep(1)
    client.beta.sessions.resources.add(s.id, type="file", file_id=f.id)
    evs = wait_idle(client, s.id, timeout=20)
    result = [e for e in evs if e["type"] == "agent.tool_result"][-1]
    assert "finished" in "".join(b.get("text", "") for b in result["content"]), result
    out = run_bash(client, fake_upstream, s.id, f"cat /mnt/session/uploads/{f.id}", 2)
    assert "arrived late" in out, out
