"""/v1/sessions through the SDK: create (pinning, initial events, metadata, title), retrieve
(status, usage, stats), list with filters and pagination, update, archive, delete."""

import time

import anthropic
import pytest
from anthropic.types.beta import BetaManagedAgentsSession

import fake_anthropic as fa
from conftest import (
    list_raw_events, make_agent, make_env, send_text, types_of, user_message, validate_model,
    wait_idle, write_script,
)

CLAUDE = "claude-sonnet-4-6"


def test_create_with_agent_id_pins_the_latest_version(client):
    a = make_agent(client, system="v1")
    client.beta.agents.update(a.id, system="v2")
    env = make_env(client)
    s = client.beta.sessions.create(agent=a.id, environment_id=env.id, title="hello", metadata={"k": "v"})
    assert s.id.startswith("sesn_")
    assert s.type == "session"
    assert s.status == "idle"
    assert s.environment_id == env.id
    assert s.title == "hello"
    assert s.metadata == {"k": "v"}
    assert s.agent.id == a.id and s.agent.version == 2 and s.agent.system == "v2"
    assert s.archived_at is None
    assert s.usage.input_tokens == 0 and s.usage.output_tokens == 0
    # a later agent version does not move an existing session
    client.beta.agents.update(a.id, system="v3")
    assert client.beta.sessions.retrieve(s.id).agent.version == 2
    # no events yet: nothing was sent
    assert list_raw_events(client, s.id) == []


def test_create_pinned_to_an_older_version_uses_it_upstream(client, fake_upstream):
    a = make_agent(client, model=CLAUDE, system="system of v1")
    client.beta.agents.update(a.id, system="system of v2")
    env = make_env(client)
    s = client.beta.sessions.create(agent={"type": "agent", "id": a.id, "version": 1}, environment_id=env.id)
    assert s.agent.version == 1 and s.agent.system == "system of v1"
    s_latest = client.beta.sessions.create(agent={"type": "agent", "id": a.id}, environment_id=env.id)
    assert s_latest.agent.version == 2

    fake_upstream.enqueue(fa.reply_text("from v1"))
    send_text(client, s.id, "hi")
    wait_idle(client, s.id)
    req = fake_upstream.messages_requests()[0]
    assert req.body["system"][0]["text"] == "system of v1"

    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.create(agent={"type": "agent", "id": a.id, "version": 9}, environment_id=env.id)


def test_create_with_initial_events_runs_a_turn(client, fake_upstream):
    a = make_agent(client, model=CLAUDE)
    env = make_env(client)
    fake_upstream.enqueue(fa.reply_text("first answer"))
    s = client.beta.sessions.create(agent=a.id, environment_id=env.id,
                                    initial_events=[user_message("kick off")])
    assert s.status == "running"
    evs = wait_idle(client, s.id)
    assert types_of(evs)[:2] == ["user.message", "session.status_running"]
    assert evs[0]["content"] == [{"type": "text", "text": "kick off"}]
    msgs = [e for e in evs if e["type"] == "agent.message"]
    assert msgs and msgs[0]["content"] == [{"type": "text", "text": "first answer"}]
    assert fake_upstream.messages_requests()[0].messages[-1]["content"][0]["text"] == "kick off"


def test_create_refuses_unknown_agent_and_environment(client):
    a = make_agent(client)
    env = make_env(client)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.create(agent="agent_nope", environment_id=env.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.create(agent=a.id, environment_id="env_nope")
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.create(agent=a.id, environment_id=env.id, initial_events=[
            {"type": "user.message", "content": []}])
    assert "initial_events[0].content" in ei.value.message
    assert list(client.beta.sessions.list()) == []


def test_retrieve_reports_usage_and_stats_after_turns(client, fake_upstream):
    a = make_agent(client, model=CLAUDE)
    env = make_env(client)
    s = client.beta.sessions.create(agent=a.id, environment_id=env.id)
    fake_upstream.enqueue(
        fa.message(fa.text("one"), input_tokens=100, output_tokens=20, cache_creation_input_tokens=30,
                   cache_read_input_tokens=40, delay=0.3),
        fa.message(fa.text("two"), input_tokens=200, output_tokens=5, cache_read_input_tokens=60),
    )
    send_text(client, s.id, "first")
    running = client.beta.sessions.retrieve(s.id)
    assert running.status == "running"
    wait_idle(client, s.id)
    s1 = client.beta.sessions.retrieve(s.id)
    assert s1.usage.input_tokens == 100
    assert s1.usage.output_tokens == 20
    assert s1.usage.cache_read_input_tokens == 40
    assert s1.usage.cache_creation.ephemeral_5m_input_tokens == 30
    assert s1.stats.active_seconds >= 0.25, s1.stats
    assert s1.stats.duration_seconds >= s1.stats.active_seconds
    assert s1.updated_at > s.updated_at

    send_text(client, s.id, "second")
    wait_idle(client, s.id, count=2)
    s2 = client.beta.sessions.retrieve(s.id)
    assert s2.usage.input_tokens == 300
    assert s2.usage.output_tokens == 25
    assert s2.usage.cache_read_input_tokens == 100
    # the session.usage events carry the running totals
    snaps = [e["usage"] for e in list_raw_events(client, s.id) if e["type"] == "session.usage"]
    assert [(u["input_tokens"], u["output_tokens"]) for u in snaps] == [(100, 20), (300, 25)]
    assert snaps[-1]["cache_read_input_tokens"] == 100
    assert snaps[-1]["cache_creation"]["ephemeral_5m_input_tokens"] == 30
    # active time does not grow while idle
    time.sleep(0.2)
    s3 = client.beta.sessions.retrieve(s.id)
    assert abs(s3.stats.active_seconds - s2.stats.active_seconds) < 0.05
    assert s3.stats.duration_seconds > s2.stats.duration_seconds


def test_session_json_matches_the_sdk_type_loosely(client):
    a = make_agent(client)
    s = client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)
    raw = client.beta.sessions.with_raw_response.retrieve(s.id).json()
    validate_model(BetaManagedAgentsSession, raw, allow_extra=True)


def test_session_json_has_no_undeclared_fields(client):
    a = make_agent(client, metadata={"x": "y"})
    s = client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)
    raw = client.beta.sessions.with_raw_response.retrieve(s.id).json()
    validate_model(BetaManagedAgentsSession, raw)


def test_budget_is_kept_or_refused(client):
    a = make_agent(client)
    budget = {"type": "limit", "max_list_cost": {"amount": "1.00", "currency": "USD"}}
    try:
        s = client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id, budget=budget)
    except anthropic.BadRequestError as e:
        assert "budget" in e.message
        return
    assert s.budget is not None and s.budget.type == "limit"


def test_unsupported_session_features_are_refused(client):
    a = make_agent(client)
    env = make_env(client)
    # Vaults are supported (test_vaults.py); one that does not exist is named.
    with pytest.raises(anthropic.NotFoundError) as ei:
        client.beta.sessions.create(agent=a.id, environment_id=env.id, vault_ids=["vlt_1"])
    assert ei.value.body["error"]["message"].startswith("vault_ids[0]")
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.create(agent={"type": "agent_v9", "id": a.id}, environment_id=env.id)
    assert ei.value.body["error"]["message"].startswith("agent.type:") and "agent_with_overrides" in ei.value.message
    for f in ["memory_store_id", "deployment_id"]:
        with pytest.raises(anthropic.BadRequestError) as ei:
            client.beta.sessions.list(**{f: "x"})
        assert ei.value.body["error"]["message"].startswith(f)
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.create(agent=a.id, environment_id=env.id,
                                    initial_events=[user_message("hi")] * 51)
    assert ei.value.body["error"]["message"].startswith("initial_events") and "50" in ei.value.message
    assert list(client.beta.sessions.list()) == []


def test_agent_with_overrides_changes_the_session_not_the_agent(client):
    a = make_agent(client, system="be terse")
    s = client.beta.sessions.create(agent={"type": "agent_with_overrides", "id": a.id, "system": "be kind",
                                           "tools": [{"type": "agent_toolset_20260401"}]},
                                    environment_id=make_env(client).id)
    assert (s.agent.id, s.agent.version, s.agent.system) == (a.id, 1, "be kind")
    assert [t.type for t in s.agent.tools] == ["agent_toolset_20260401"]
    assert client.beta.agents.retrieve(a.id).system == "be terse"


def test_list_filters_order_and_pagination(client, scripts_dir):
    slow = write_script(scripts_dir, "slow", "turns:\n  - text: late\n    delay_ms: 20000\n")
    a = make_agent(client)
    b = make_agent(client)
    c = make_agent(client, model=slow)
    env = make_env(client)
    sa = [client.beta.sessions.create(agent=a.id, environment_id=env.id, title=f"a{i}").id for i in range(3)]
    sb = client.beta.sessions.create(agent=b.id, environment_id=env.id).id
    sc = client.beta.sessions.create(agent=c.id, environment_id=env.id,
                                     initial_events=[user_message("take your time")]).id
    all_ids = sa + [sb, sc]

    desc = [s.id for s in client.beta.sessions.list()]
    assert desc == list(reversed(all_ids)), "default order is newest first"
    asc = [s.id for s in client.beta.sessions.list(order="asc")]
    assert asc == all_ids
    assert [s.id for s in client.beta.sessions.list(order="desc")] == desc

    assert sorted(s.id for s in client.beta.sessions.list(agent_id=a.id)) == sorted(sa)
    assert [s.id for s in client.beta.sessions.list(agent_id=b.id)] == [sb]
    assert [s.id for s in client.beta.sessions.list(agent_id=a.id, agent_version=1, order="asc")] == sa
    assert list(client.beta.sessions.list(agent_id=a.id, agent_version=2)) == []

    assert [s.id for s in client.beta.sessions.list(statuses=["running"])] == [sc]
    assert set(s.id for s in client.beta.sessions.list(statuses=["idle"])) == set(sa + [sb])
    assert set(s.id for s in client.beta.sessions.list(statuses=["idle", "running"])) == set(all_ids)
    assert list(client.beta.sessions.list(statuses=["terminated"])) == []

    p1 = client.beta.sessions.list(limit=2, order="asc")
    assert [s.id for s in p1.data] == all_ids[:2] and p1.has_next_page()
    p2 = p1.get_next_page()
    assert [s.id for s in p2.data] == all_ids[2:4]
    walked = [s.id for s in client.beta.sessions.list(limit=2, order="asc")]
    assert walked == all_ids

    created = client.beta.sessions.retrieve(sa[1]).created_at
    gte = [s.id for s in client.beta.sessions.list(order="asc", created_at_gte=created.isoformat())]
    assert gte == all_ids[1:]
    lt = [s.id for s in client.beta.sessions.list(order="asc", created_at_lt=created.isoformat())]
    assert lt == all_ids[:1]

    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.list(statuses=["sleeping"])  # type: ignore[list-item]
    assert "statuses" in ei.value.message


def test_update_title_and_metadata_logs_session_updated(client):
    a = make_agent(client)
    s = client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id, title="old",
                                    metadata={"a": "1", "b": "2"})
    u = client.beta.sessions.update(s.id, title="new", metadata={"a": None, "c": "3"})
    assert u.title == "new"
    assert u.metadata == {"b": "2", "c": "3"}
    assert client.beta.sessions.retrieve(s.id).title == "new"
    evs = list_raw_events(client, s.id)
    assert types_of(evs) == ["session.updated"]
    assert evs[0]["title"] == "new"
    assert evs[0]["metadata"] == {"b": "2", "c": "3"}

    # the same values again: nothing changes, nothing is logged
    same = client.beta.sessions.update(s.id, title="new", metadata={"c": "3"})
    assert same.title == "new"
    assert types_of(list_raw_events(client, s.id)) == ["session.updated"]

    # clearing the title
    cleared = client.beta.sessions.update(s.id, title=None)
    assert cleared.title is None
    assert types_of(list_raw_events(client, s.id)) == ["session.updated", "session.updated"]


def test_archive_blocks_new_events(client):
    a = make_agent(client)
    s = client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)
    send_text(client, s.id, "before")
    wait_idle(client, s.id)
    arch = client.beta.sessions.archive(s.id)
    assert arch.archived_at is not None
    assert client.beta.sessions.retrieve(s.id).archived_at is not None
    with pytest.raises(anthropic.ConflictError) as ei:
        send_text(client, s.id, "after")
    assert ei.value.body["error"]["type"] == "conflict_error"
    # history stays readable
    assert "agent.message" in types_of(list_raw_events(client, s.id))
    assert s.id not in {x.id for x in client.beta.sessions.list()}
    assert s.id in {x.id for x in client.beta.sessions.list(include_archived=True)}


def test_delete_removes_the_session_and_its_log(client):
    a = make_agent(client)
    s = client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)
    send_text(client, s.id, "hello")
    wait_idle(client, s.id)
    d = client.beta.sessions.delete(s.id)
    assert d.id == s.id and d.type == "session_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.retrieve(s.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.events.list(s.id)
    with pytest.raises(anthropic.NotFoundError):
        send_text(client, s.id, "anyone?")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.delete(s.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.update(s.id, title="x")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.archive(s.id)
    assert list(client.beta.sessions.list()) == []


def test_delete_while_running_stops_the_work(client, fake_upstream):
    a = make_agent(client, model=CLAUDE)
    s = client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)
    fake_upstream.enqueue(fa.hang())
    send_text(client, s.id, "hang please")
    req = fake_upstream.wait_for_requests(1)[0]
    client.beta.sessions.delete(s.id)
    assert req.disconnected.wait(5), "the upstream request of a deleted session kept running"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.retrieve(s.id)
