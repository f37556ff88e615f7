"""/v1/agents through the SDK: create, retrieve (latest and pinned), immutable versions with
optimistic concurrency, list with cursor pagination, archive, versions list."""

import anthropic
import pytest
from anthropic.types.beta import BetaManagedAgentsAgent

from conftest import make_agent, validate_model

CUSTOM_TOOL = {
    "type": "custom",
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_create_and_retrieve_round_trip(client):
    a = client.beta.agents.create(
        name="researcher",
        model="scripted/echo",
        description="finds things",
        system="You are terse.",
        metadata={"team": "qa", "tier": "1"},
        tools=[CUSTOM_TOOL],
    )
    assert a.id.startswith("agent_")
    assert a.type == "agent"
    assert a.version == 1
    assert a.name == "researcher"
    assert a.description == "finds things"
    assert a.system == "You are terse."
    assert a.model.id == "scripted/echo"
    assert a.metadata == {"team": "qa", "tier": "1"}
    assert a.archived_at is None
    assert len(a.tools) == 1 and a.tools[0].type == "custom" and a.tools[0].name == "get_weather"
    assert a.tools[0].input_schema.required == ["city"]

    got = client.beta.agents.retrieve(a.id)
    assert got == a
    # the raw JSON matches the SDK's declared type exactly
    raw = client.beta.agents.with_raw_response.retrieve(a.id).json()
    validate_model(BetaManagedAgentsAgent, raw)


def test_model_config_object_is_accepted(client):
    a = client.beta.agents.create(name="cfg", model={"id": "scripted/echo", "speed": "fast"})
    assert a.model.id == "scripted/echo"
    assert a.model.speed == "fast"


def test_update_makes_a_new_immutable_version(client):
    a = make_agent(client, system="v1 prompt", metadata={"keep": "yes", "drop": "me"})
    b = client.beta.agents.update(a.id, version=1, system="v2 prompt", metadata={"drop": None, "new": "1"})
    assert b.id == a.id
    assert b.version == 2
    assert b.system == "v2 prompt"
    assert b.metadata == {"keep": "yes", "new": "1"}
    assert b.name == a.name  # untouched fields carry over

    # latest is v2, v1 is still there unchanged
    assert client.beta.agents.retrieve(a.id).version == 2
    v1 = client.beta.agents.retrieve(a.id, version=1)
    assert v1.version == 1 and v1.system == "v1 prompt" and v1.metadata == {"keep": "yes", "drop": "me"}
    v2 = client.beta.agents.retrieve(a.id, version=2)
    assert v2.system == "v2 prompt"

    with pytest.raises(anthropic.NotFoundError):
        client.beta.agents.retrieve(a.id, version=3)

    # an update without `version` applies to the latest
    c = client.beta.agents.update(a.id, description="described")
    assert c.version == 3 and c.description == "described" and c.system == "v2 prompt"


def test_stale_version_is_a_conflict(client):
    a = make_agent(client)
    client.beta.agents.update(a.id, version=1, system="first writer")
    with pytest.raises(anthropic.ConflictError) as ei:
        client.beta.agents.update(a.id, version=1, system="second writer")
    assert ei.value.status_code == 409
    assert ei.value.body["type"] == "error"
    assert ei.value.body["error"]["type"] == "conflict_error"
    # nothing changed
    latest = client.beta.agents.retrieve(a.id)
    assert latest.version == 2 and latest.system == "first writer"


def test_noop_update_keeps_the_version(client):
    a = make_agent(client, system="same", metadata={"k": "v"})
    same = client.beta.agents.update(a.id, version=1, system="same", metadata={"k": "v"}, name=a.name)
    assert same.version == 1
    assert client.beta.agents.retrieve(a.id).version == 1
    versions = list(client.beta.agents.versions.list(a.id))
    assert [v.version for v in versions] == [1]


def test_list_paginates_every_agent_exactly_once(client):
    created = {make_agent(client, name=f"pag-{i:02d}").id for i in range(25)}

    first = client.beta.agents.list(limit=10)
    assert len(first.data) == 10
    assert first.has_next_page()
    assert first.next_page

    # manual cursor walk
    seen = []
    page = first
    pages = 0
    while True:
        pages += 1
        seen.extend(a.id for a in page.data)
        if not page.has_next_page():
            break
        page = page.get_next_page()
    assert pages == 3
    assert len(seen) == 25 and set(seen) == created

    # the SDK's auto-pagination sees the same, each once
    auto = [a.id for a in client.beta.agents.list(limit=10)]
    assert len(auto) == 25 and set(auto) == created
    assert auto == seen


def test_list_shows_only_latest_versions_and_hides_archived(client):
    a = make_agent(client)
    client.beta.agents.update(a.id, system="v2")
    b = make_agent(client)
    listed = {x.id: x for x in client.beta.agents.list()}
    assert set(listed) == {a.id, b.id}
    assert listed[a.id].version == 2

    archived = client.beta.agents.archive(b.id)
    assert archived.archived_at is not None
    assert [x.id for x in client.beta.agents.list()] == [a.id]
    assert {x.id for x in client.beta.agents.list(include_archived=True)} == {a.id, b.id}


def test_archive_keeps_the_agent_readable_but_not_usable(client):
    a = make_agent(client)
    env = client.beta.environments.create(name="e")
    archived = client.beta.agents.archive(a.id)
    assert archived.archived_at is not None
    assert client.beta.agents.retrieve(a.id).archived_at is not None
    with pytest.raises(anthropic.ConflictError):
        client.beta.agents.update(a.id, system="nope")
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.create(agent=a.id, environment_id=env.id)
    assert "agent" in ei.value.message


def test_versions_list_newest_first_with_pagination(client):
    a = make_agent(client, system="s1")
    for i in range(2, 6):
        client.beta.agents.update(a.id, system=f"s{i}")
    all_versions = list(client.beta.agents.versions.list(a.id))
    assert [v.version for v in all_versions] == [5, 4, 3, 2, 1]
    assert [v.system for v in all_versions] == ["s5", "s4", "s3", "s2", "s1"]

    p1 = client.beta.agents.versions.list(a.id, limit=2)
    assert [v.version for v in p1.data] == [5, 4]
    assert p1.has_next_page()
    paged = [v.version for v in client.beta.agents.versions.list(a.id, limit=2)]
    assert paged == [5, 4, 3, 2, 1]


def test_unknown_agent_is_404(client):
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.agents.retrieve("agent_doesnotexist")
    assert ei.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.agents.update("agent_doesnotexist", system="x")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.agents.archive("agent_doesnotexist")
    with pytest.raises(anthropic.NotFoundError):
        list(client.beta.agents.versions.list("agent_doesnotexist"))


def test_agent_validation_errors_name_the_field(client):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name="x", model="gpt-4o")
    assert ei.value.body["error"]["message"].startswith("model") or "model:" in ei.value.message
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name="x", model="scripted/no-such-script")
    assert "model" in ei.value.message
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name="  ", model="scripted/echo")
    assert "name" in ei.value.message
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name="x", model="scripted/echo", tools=[CUSTOM_TOOL, CUSTOM_TOOL])
    assert "tools[1].name" in ei.value.message
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name="x", model="scripted/echo",
                                  tools=[{**CUSTOM_TOOL, "name": "has space"}])
    assert "tools[0].name" in ei.value.message
    # an invalid update leaves the agent alone
    a = make_agent(client)
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.update(a.id, model="not-a-model")
    assert "model" in ei.value.message
    assert client.beta.agents.retrieve(a.id).version == 1


def test_list_created_at_bounds(client):
    agents = [make_agent(client, name=f"t{i}") for i in range(4)]
    pivot = agents[2].created_at
    gte = {a.id for a in client.beta.agents.list(created_at_gte=pivot.isoformat())}
    assert gte == {a.id for a in agents[2:]}
    lte = {a.id for a in client.beta.agents.list(created_at_lte=pivot.isoformat())}
    assert lte == {a.id for a in agents[:3]}
    # created_at is the agent's, not the version's: an update does not move it
    client.beta.agents.update(agents[0].id, system="later")
    assert agents[0].id not in {a.id for a in client.beta.agents.list(created_at_gte=pivot.isoformat())}
    v2 = client.beta.agents.retrieve(agents[0].id)
    assert v2.created_at == agents[0].created_at and v2.updated_at > agents[0].updated_at


def test_a_broken_script_is_refused_at_create(client, scripts_dir):
    from conftest import write_script
    bad = write_script(scripts_dir, "broken", "turns:\n  - {}\n")
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name="x", model=bad)
    assert ei.value.message and "model" in ei.value.body["error"]["message"]
    assert "turns[0]" in ei.value.body["error"]["message"]
    good = write_script(scripts_dir, "fixed", "turns:\n  - text: hi\n")
    assert client.beta.agents.create(name="x", model=good).model.id == "scripted/fixed"


@pytest.mark.parametrize("field,value,where", [
    ("skills", [{"type": "anthropic", "skill_id": "xlsx"}], "skills"),
    ("tools", [{"type": "agent_toolset_20260401", "configs": [{"name": "shell"}]}], "tools[0].configs[0].name"),
    ("execution_identity", {"type": "aws_role", "role_arn": "arn:aws:iam::123456789012:role/r"},
     "execution_identity"),
])
def test_what_agentd_cannot_honour_is_refused(client, field, value, where):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name="x", model="scripted/echo", **{field: value})
    assert ei.value.body["error"]["message"].startswith(where), ei.value.message
    assert "not" in ei.value.message
    assert list(client.beta.agents.list()) == []


def test_an_unknown_config_names_the_known_tools(client):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name="x", model="scripted/echo",
                                  tools=[{"type": "agent_toolset_20260401", "configs": [{"name": "shell"}]}])
    assert "bash, edit, read, write, glob, grep, web_fetch, web_search" in ei.value.message


def test_null_where_the_sdk_allows_it_and_update_null_clears(client):
    a = client.beta.agents.create(
        name="n", model="scripted/echo", skills=[], mcp_servers=[], execution_identity=None,
        tools=[{"type": "agent_toolset_20260401", "default_config": None,
                "configs": [{"name": "bash", "enabled": None, "permission_policy": None}]}, CUSTOM_TOOL],
    )
    assert a.execution_identity.type == "service_account"
    assert a.tools[0].default_config.enabled is True
    assert a.tools[0].configs[0].permission_policy.type == "always_allow"
    validate_model(BetaManagedAgentsAgent, client.beta.agents.with_raw_response.retrieve(a.id).json())
    b = client.beta.agents.update(a.id, version=1, tools=None, mcp_servers=None, skills=None)
    assert b.version == 2 and b.tools == []


def test_sdk_limits_are_enforced(client):
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name="x", model="scripted/echo", metadata={f"k{i}": "v" for i in range(17)})
    assert "metadata" in ei.value.message and "16" in ei.value.message
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name="x", model="scripted/echo", metadata={"k": "v" * 513})
    assert "512" in ei.value.message
    many = [{**CUSTOM_TOOL, "name": f"t{i}"} for i in range(257)]
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.agents.create(name="x", model="scripted/echo", tools=many)
    assert ei.value.body["error"]["message"].startswith("tools:") and "256" in ei.value.message
