"""Outcomes through the official SDK: user.define_outcome (as an event and in initial_events),
the grader's span events validated against the SDK's types, and session.outcome_evaluations."""

from __future__ import annotations

import anthropic
import pytest

from conftest import list_raw_events, make_env, validate_event, validate_model, wait_until, write_script

SCRIPT = """
turns:
  - text: "first draft"
  - text: "second draft"
grades:
  - {result: needs_revision, explanation: "criterion 2 fails: no title"}
  - {result: satisfied, explanation: "both criteria met"}
"""

OUTCOME = {
    "type": "user.define_outcome",
    "description": "Write a short report with a title",
    "rubric": {"type": "text", "content": "1. it is a report\n2. it has a title"},
}


def settled(client, sid):
    s = client.beta.sessions.retrieve(sid)
    return s.status == "idle" and s.outcome_evaluations and s.outcome_evaluations[0].result not in (
        "pending", "running", "evaluating", "needs_revision")


@pytest.mark.parametrize("how", ["event", "initial_events"])
def test_an_outcome_is_graded_and_revised_until_satisfied(client, scripts_dir, how):
    model = write_script(scripts_dir, "outcome", SCRIPT)
    agent = client.beta.agents.create(name="writer", model=model)
    env = make_env(client)
    if how == "event":
        s = client.beta.sessions.create(agent=agent.id, environment_id=env.id)
        sent = client.beta.sessions.events.send(s.id, events=[OUTCOME])
        assert sent.data[0].type == "user.define_outcome"
        assert sent.data[0].outcome_id.startswith("outc_")
    else:
        s = client.beta.sessions.create(agent=agent.id, environment_id=env.id, initial_events=[OUTCOME])
    wait_until(lambda: settled(client, s.id), timeout=15, what="the outcome to settle")

    raw = list_raw_events(client, s.id)
    for e in raw:
        validate_event(e)
    ends = [e for e in raw if e["type"] == "span.outcome_evaluation_end"]
    starts = [e for e in raw if e["type"] == "span.outcome_evaluation_start"]
    assert [(e["iteration"], e["result"]) for e in ends] == [(0, "needs_revision"), (1, "satisfied")]
    assert [e["id"] for e in starts] == [e["outcome_evaluation_start_id"] for e in ends]
    defined = next(e for e in raw if e["type"] == "user.define_outcome")
    assert all(e["outcome_id"] == defined["outcome_id"] for e in starts + ends)
    assert [e["content"][0]["text"] for e in raw if e["type"] == "agent.message"] == ["first draft", "second draft"]

    session = client.beta.sessions.retrieve(s.id)
    [ev] = session.outcome_evaluations
    assert (ev.result, ev.iteration, ev.outcome_id) == ("satisfied", 1, defined["outcome_id"])
    assert ev.explanation == "both criteria met" and ev.completed_at is not None
    raw_session = client.beta.sessions.with_raw_response.retrieve(s.id).json()
    validate_model(anthropic.types.beta.BetaManagedAgentsSession, raw_session)


def test_bad_outcomes_are_refused_naming_the_field(client):
    agent = client.beta.agents.create(name="w", model="scripted/echo")
    s = client.beta.sessions.create(agent=agent.id, environment_id=make_env(client).id)
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(s.id, events=[{**OUTCOME, "max_iterations": 99}])
    assert "events[0].max_iterations" in ei.value.message
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(s.id, events=[{**OUTCOME, "rubric": {"type": "file", "file_id": "file_x"}}])
    assert "events[0].rubric" in ei.value.message
    assert list(client.beta.sessions.events.list(s.id)) == []


CHECKED_SCRIPT = """
turns:
  - tool_use: {name: write, input: {file_path: out.json, content: '{"name": "widget", "price": "cheap"}'}}
  - text: "wrote out.json"
  - tool_use: {name: write, input: {file_path: out.json, content: '{"name": "widget", "price": 9.5}'}}
  - text: "fixed the price"
"""


def test_exact_checks_in_the_sandbox_decide_before_any_model_grader(client, scripts_dir):
    """Beyond the reference: a rubric's checks (a command that must exit 0, a JSON Schema a
    produced file must satisfy) are run against the workspace; with no text criteria they
    alone decide."""
    model = write_script(scripts_dir, "checked", CHECKED_SCRIPT)
    agent = client.beta.agents.create(name="maker", model=model, tools=[{"type": "agent_toolset_20260401"}])
    s = client.beta.sessions.create(agent=agent.id, environment_id=make_env(client).id)
    schema = {"type": "object", "required": ["name", "price"],
              "properties": {"name": {"type": "string"}, "price": {"type": "number", "minimum": 0}}}
    client.beta.sessions.events.send(s.id, events=[{
        "type": "user.define_outcome",
        "description": "Write out.json describing the product",
        "rubric": {"type": "text", "content": "", "checks": [
            {"type": "command", "command": "test -s out.json"},
            {"type": "json_schema", "file": "out.json", "schema": schema},
        ]},
    }])
    wait_until(lambda: settled(client, s.id), timeout=30, what="the outcome to settle")
    raw = list_raw_events(client, s.id)
    ends = [e for e in raw if e["type"] == "span.outcome_evaluation_end"]
    assert [e["result"] for e in ends] == ["needs_revision", "satisfied"], ends
    assert "out.json does not satisfy its schema" in ends[0]["explanation"]
    assert "/price" in ends[0]["explanation"]
    assert ends[1]["explanation"] == "All checks passed."
    # No model grader ran: every model request came from the agent's own turns.
    assert sum(1 for e in raw if e["type"] == "span.model_request_start") == 4


def test_a_symlink_planted_for_a_check_never_reads_a_host_file(client, scripts_dir, server):
    secret_file = server.data_dir / "host-secret.json"
    secret_file.write_text('"host-only-secret-7f3a"')
    secret_file.chmod(0o644)
    model = write_script(scripts_dir, "planter", f"""
turns:
  - tool_use: {{name: bash, input: {{command: "ln -sf {secret_file} out.json; ls -l out.json"}}}}
  - text: "done"
""")
    agent = client.beta.agents.create(name="planter", model=model, tools=[{"type": "agent_toolset_20260401"}])
    s = client.beta.sessions.create(agent=agent.id, environment_id=make_env(client).id)
    client.beta.sessions.events.send(s.id, events=[{
        "type": "user.define_outcome", "description": "write out.json", "max_iterations": 1,
        "rubric": {"type": "text", "content": "", "checks": [
            {"type": "json_schema", "file": "out.json", "schema": {"type": "object"}}]},
    }])
    wait_until(lambda: settled(client, s.id), timeout=30, what="the outcome to settle")
    raw = list_raw_events(client, s.id)
    [end] = [e for e in raw if e["type"] == "span.outcome_evaluation_end"]
    assert end["result"] == "max_iterations_reached"
    assert "host-only-secret" not in str(raw), "a host file leaked through a check"


def test_a_shell_function_the_agent_defined_cannot_pass_a_check(client, scripts_dir):
    """Checks run in a fresh shell: a function the agent left in its own shell to shadow the
    check's command changes nothing."""
    model = write_script(scripts_dir, "shadower", """
turns:
  - tool_use: {name: bash, input: {command: "test() { return 0; }; export -f test; echo shadowed"}}
  - text: "done"
""")
    agent = client.beta.agents.create(name="shadower", model=model, tools=[{"type": "agent_toolset_20260401"}])
    s = client.beta.sessions.create(agent=agent.id, environment_id=make_env(client).id)
    client.beta.sessions.events.send(s.id, events=[{
        "type": "user.define_outcome", "description": "write out.json", "max_iterations": 1,
        "rubric": {"type": "text", "content": "", "checks": [
            {"type": "command", "command": "test -s out.json"}]},
    }])
    wait_until(lambda: settled(client, s.id), timeout=30, what="the outcome to settle")
    raw = list_raw_events(client, s.id)
    [end] = [e for e in raw if e["type"] == "span.outcome_evaluation_end"]
    assert end["result"] == "max_iterations_reached", end
    assert "`test -s out.json` exited 1" in end["explanation"], end
