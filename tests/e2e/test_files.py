"""The Files API (upload, metadata, list, download, delete) and file rubrics for outcomes,
through the official SDK."""

from __future__ import annotations

import anthropic
import pytest
from anthropic.types.beta import BetaFileMetadata

from conftest import list_raw_events, make_env, validate_event, validate_model, wait_until, write_script

RUBRIC = "1. The report names three teas.\n2. Each tea has an origin.\n"


def upload(client, name: str, data: bytes, mime: str = "text/markdown"):
    raw = client.beta.files.with_raw_response.upload(file=(name, data, mime))
    validate_model(BetaFileMetadata, raw.json())
    return raw.parse()


def test_files_upload_list_download_delete(client):
    f = upload(client, "dir/rubric.md", RUBRIC.encode())
    assert f.id.startswith("file_") and f.type == "file"
    assert (f.filename, f.mime_type, f.size_bytes) == ("rubric.md", "text/markdown", len(RUBRIC.encode()))
    assert client.beta.files.retrieve_metadata(f.id).id == f.id
    other = upload(client, "data.bin", bytes(range(256)), "application/octet-stream")
    listed = [x.id for x in client.beta.files.list()]
    assert listed[:2] == [other.id, f.id], "newest first"
    assert client.beta.files.download(f.id).read() == RUBRIC.encode()
    assert client.beta.files.download(other.id).read() == bytes(range(256))
    page = client.beta.files.list(limit=1)
    assert [x.id for x in page.data] == [other.id] and page.next_page

    deleted = client.beta.files.delete(f.id)
    assert (deleted.id, deleted.type) == (f.id, "file_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.retrieve_metadata(f.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.download(f.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.delete(f.id)


def test_files_are_private_to_their_workspace(server, client):
    f = upload(client, "rubric.md", RUBRIC.encode())
    stranger = server.client(key=server.create_key("elsewhere"))
    with pytest.raises(anthropic.NotFoundError):
        stranger.beta.files.retrieve_metadata(f.id)
    assert [x.id for x in stranger.beta.files.list()] == []


def test_an_upload_without_a_file_part_is_refused(client):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.post("/v1/files", cast_to=object, body={"x": "y"},
                    options={"headers": {"content-type": "application/json"}})
    assert "multipart" in ei.value.message


GRADED = """
turns:
  - echo: true
  - text: "second draft"
grades:
  - {result: needs_revision, explanation: "criterion 2 fails"}
  - {result: satisfied, explanation: "both criteria met"}
"""


def test_a_file_rubric_is_read_once_and_graded_against(client, scripts_dir):
    f = upload(client, "rubric.md", RUBRIC.encode())
    model = write_script(scripts_dir, "file-rubric", GRADED)
    agent = client.beta.agents.create(name="writer", model=model)
    s = client.beta.sessions.create(agent=agent.id, environment_id=make_env(client).id)
    client.beta.sessions.events.send(s.id, events=[{
        "type": "user.define_outcome",
        "description": "A short report on tea",
        "rubric": {"type": "file", "file_id": f.id},
    }])
    # The file can go: its text was copied into the log with the outcome.
    client.beta.files.delete(f.id)

    def settled():
        ev = client.beta.sessions.retrieve(s.id).outcome_evaluations
        return ev and ev[0].result == "satisfied" and ev[0]

    ev = wait_until(settled, timeout=15, what="the outcome to be satisfied")
    assert ev.iteration == 1
    raw = list_raw_events(client, s.id)
    for e in raw:
        validate_event(e)
    defined = next(e for e in raw if e["type"] == "user.define_outcome")
    assert defined["rubric"] == {"type": "file", "file_id": f.id}
    # The agent was told the rubric's text (its first turn echoes what it was given).
    first = next(e for e in raw if e["type"] == "agent.message")
    assert "Each tea has an origin." in first["content"][0]["text"]


def test_a_file_rubric_must_be_a_text_file(client):
    agent = client.beta.agents.create(name="w", model="scripted/echo")
    s = client.beta.sessions.create(agent=agent.id, environment_id=make_env(client).id)
    binary = upload(client, "blob.bin", b"\xff\xfe\x00\x01", "application/octet-stream")
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(s.id, events=[{
            "type": "user.define_outcome", "description": "x",
            "rubric": {"type": "file", "file_id": binary.id}}])
    assert "events[0].rubric.file_id" in ei.value.message and "UTF-8" in ei.value.message
    assert list(client.beta.sessions.events.list(s.id)) == []


def test_one_request_cannot_copy_a_rubric_file_without_bound(client):
    """A 256 KiB rubric named by many outcomes in one request would copy it into the log again
    and again; a request may copy at most 1 MiB of rubric text."""
    agent = client.beta.agents.create(name="w", model="scripted/echo")
    s = client.beta.sessions.create(agent=agent.id, environment_id=make_env(client).id)
    big = upload(client, "big.md", b"criterion. " * (256 * 1024 // 11))
    outcome = {"type": "user.define_outcome", "description": "x",
               "rubric": {"type": "file", "file_id": big.id}}
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(s.id, events=[outcome] * 200)
    assert "at most" in ei.value.message
    assert list(client.beta.sessions.events.list(s.id)) == []
    too_big = upload(client, "huge.md", b"x" * (300 * 1024))
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(s.id, events=[{**outcome, "rubric": {"type": "file", "file_id": too_big.id}}])
    assert "at most 262144" in ei.value.message


def test_files_list_by_ids_and_scope(client):
    a = upload(client, "a.md", b"a")
    b = upload(client, "b.md", b"b")
    upload(client, "c.md", b"c")
    page = client.beta.files.list(ids=[a.id, b.id, a.id, "file_missing"])
    assert sorted(f.id for f in page.data) == sorted([a.id, b.id])
    assert not page.has_next_page()
    # Uploads belong to no session; a session's outputs are in test_outputs.py.
    assert list(client.beta.files.list(scope_id="sesn_x")) == []
    assert all(f.scope is None for f in client.beta.files.list())


def test_the_workspace_files_quota_refuses_an_upload_past_it_and_deleting_makes_room(server_factory):
    server = server_factory(env={"AGENTD_FILES_QUOTA_BYTES": "1000", "AGENTD_FILES_QUOTA_FILES": "5"})
    client = server.client()
    first = upload(client, "a.bin", b"x" * 600, "application/octet-stream")
    with pytest.raises(anthropic.BadRequestError) as e:
        upload(client, "b.bin", b"y" * 500, "application/octet-stream")
    assert "quota of 1000 bytes" in e.value.body["error"]["message"]
    assert [f.id for f in client.beta.files.list()] == [first.id], "nothing stored"
    client.beta.files.delete(first.id)
    upload(client, "b.bin", b"y" * 500, "application/octet-stream")
