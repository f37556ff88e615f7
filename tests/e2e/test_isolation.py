"""Workspaces: a key of another workspace cannot see, list or touch anything of this one
(404s and empty lists); a second key of the same workspace sees everything."""

import anthropic
import pytest

from conftest import list_raw_events, make_agent, make_env, send_text, user_message, wait_idle


@pytest.fixture
def two_workspaces(server, client):
    a_agent = make_agent(client, system="A's secret prompt")
    a_env = make_env(client)
    a_sess = client.beta.sessions.create(agent=a_agent.id, environment_id=a_env.id, title="A's session")
    send_text(client, a_sess.id, "hello from A")
    a_events = wait_idle(client, a_sess.id)
    key_b = server.create_key("other")
    b = server.client(key=key_b)
    return dict(agent=a_agent, env=a_env, session=a_sess, events=a_events, b=b)


def test_other_workspace_lists_nothing(two_workspaces):
    b = two_workspaces["b"]
    assert list(b.beta.agents.list()) == []
    assert list(b.beta.agents.list(include_archived=True)) == []
    assert list(b.beta.environments.list(include_archived=True)) == []
    assert list(b.beta.sessions.list(include_archived=True)) == []
    assert list(b.beta.sessions.list(agent_id=two_workspaces["agent"].id)) == []


def test_other_workspace_gets_404_for_everything(two_workspaces):
    b = two_workspaces["b"]
    ag, env, s = two_workspaces["agent"], two_workspaces["env"], two_workspaces["session"]
    ev_id = two_workspaces["events"][0]["id"]
    calls = {
        "agent retrieve": lambda: b.beta.agents.retrieve(ag.id),
        "agent retrieve version": lambda: b.beta.agents.retrieve(ag.id, version=1),
        "agent update": lambda: b.beta.agents.update(ag.id, system="pwned"),
        "agent archive": lambda: b.beta.agents.archive(ag.id),
        "agent versions": lambda: b.beta.agents.versions.list(ag.id),
        "env retrieve": lambda: b.beta.environments.retrieve(env.id),
        "env update": lambda: b.beta.environments.update(env.id, name="pwned"),
        "env archive": lambda: b.beta.environments.archive(env.id),
        "env delete": lambda: b.beta.environments.delete(env.id),
        "session retrieve": lambda: b.beta.sessions.retrieve(s.id),
        "session update": lambda: b.beta.sessions.update(s.id, title="pwned"),
        "session archive": lambda: b.beta.sessions.archive(s.id),
        "session delete": lambda: b.beta.sessions.delete(s.id),
        "events list": lambda: b.beta.sessions.events.list(s.id),
        "events send": lambda: b.beta.sessions.events.send(s.id, events=[user_message("pwned")]),
        "events interrupt": lambda: b.beta.sessions.events.send(s.id, events=[{"type": "user.interrupt"}]),
        "events stream": lambda: b.beta.sessions.events.stream(s.id),
        "events stream resume": lambda: b.beta.sessions.events.stream(s.id, extra_headers={"Last-Event-ID": ev_id}),
        "session with A's agent": lambda: b.beta.sessions.create(agent=ag.id, environment_id=env.id),
    }
    leaked = []
    for name, call in calls.items():
        try:
            call()
            leaked.append(f"{name}: succeeded")
        except anthropic.NotFoundError as e:
            body = str(e.body)
            if "secret" in body or "A's" in body:
                leaked.append(f"{name}: the 404 body leaks content: {body}")
        except anthropic.APIStatusError as e:
            leaked.append(f"{name}: {e.status_code} instead of 404")
    assert not leaked, leaked


def test_other_workspace_cannot_mix_in_resources(two_workspaces):
    b = two_workspaces["b"]
    b_agent = make_agent(b)
    b_env = make_env(b)
    with pytest.raises(anthropic.NotFoundError):
        b.beta.sessions.create(agent=b_agent.id, environment_id=two_workspaces["env"].id)
    with pytest.raises(anthropic.NotFoundError):
        b.beta.sessions.create(agent={"type": "agent", "id": two_workspaces["agent"].id, "version": 1},
                               environment_id=b_env.id)
    # B's own things work, and stay invisible to A
    s = b.beta.sessions.create(agent=b_agent.id, environment_id=b_env.id)
    send_text(b, s.id, "from B")
    wait_idle(b, s.id)
    assert [x.id for x in b.beta.sessions.list()] == [s.id]


def test_workspace_a_is_untouched_and_blind_to_b(server, client, two_workspaces):
    b = two_workspaces["b"]
    b_agent = make_agent(b)
    b_env = make_env(b)
    b_sess = b.beta.sessions.create(agent=b_agent.id, environment_id=b_env.id)
    for call in (lambda: client.beta.agents.retrieve(b_agent.id),
                 lambda: client.beta.environments.retrieve(b_env.id),
                 lambda: client.beta.sessions.retrieve(b_sess.id),
                 lambda: client.beta.sessions.events.list(b_sess.id)):
        with pytest.raises(anthropic.NotFoundError):
            call()
    assert [x.id for x in client.beta.agents.list()] == [two_workspaces["agent"].id]
    assert [x.id for x in client.beta.environments.list()] == [two_workspaces["env"].id]
    assert [x.id for x in client.beta.sessions.list()] == [two_workspaces["session"].id]
    # nothing B tried changed A's things
    s = client.beta.sessions.retrieve(two_workspaces["session"].id)
    assert s.title == "A's session" and s.archived_at is None
    assert client.beta.agents.retrieve(two_workspaces["agent"].id).version == 1
    assert list_raw_events(client, s.id) == two_workspaces["events"]


def test_a_second_key_of_the_same_workspace_sees_everything(server, two_workspaces):
    a2 = server.client(key=server.create_key("default"))
    assert [x.id for x in a2.beta.sessions.list()] == [two_workspaces["session"].id]
    assert a2.beta.agents.retrieve(two_workspaces["agent"].id).system == "A's secret prompt"
    assert len(list(a2.beta.sessions.events.list(two_workspaces["session"].id))) == len(two_workspaces["events"])
