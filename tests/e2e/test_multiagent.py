"""Multi-agent sessions (a coordinator and its worker threads) through the official SDK.

A coordinator agent has `multiagent: {"type": "coordinator", "agents": [...]}`; its model gets
the built-in `start_thread` / `send_to_thread` tools. Each `start_thread` creates a worker thread
that runs a roster agent concurrently; the session stays running until every worker has replied,
then the coordinator's model is called again with the replies, and the session goes idle.

Every model here is agentd's scripted model. The coordinator's script is always:
  turn 0  one `start_thread` tool_use per worker (all in one response)
  turn 1  "Waiting for the workers."            (after the tool results)
  turn 2  `echo: true`                           (after the replies: echoes them back)
so the coordinator's final `agent.message` shows exactly what the workers' replies put in its
context. Each worker's script answers its task with one distinct text after `delay_ms`.

Tests:
- fan-out to three workers: events on the session stream and on every thread, concurrency,
  the threads API (list, per-thread events), usage.
- roster validation and resolution on agents.create / agents.update, and the roster pinned by
  sessions.create with full agent definitions.
- threads API edges: unknown thread, archiving the primary or a finished child, a live and a
  replayed thread event stream.
- a worker whose model fails: the coordinator gets an error reply and carries on.
- SIGKILL while the workers run, restart: every thread resumes, nothing is logged twice.
- user.interrupt on the session stops the coordinator and every worker.

Every raw event (session and thread logs) is validated strictly against the SDK's types, and
so are the threads, agents and sessions read back.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Optional

import anthropic
import pytest
from anthropic.types.beta import BetaManagedAgentsAgent, BetaManagedAgentsSession, BetaManagedAgentsSessionAgent
from anthropic.types.beta.sessions import BetaManagedAgentsSessionThread

from conftest import (
    all_pages, collect_stream, list_raw_events, make_agent, make_env, send_text, types_of, validate_event,
    validate_model, wait_events, wait_idle, wait_until, write_script,
)

PROMPT = "Prepare a short report on tea."
WAITING = "Waiting for the workers."
TEAM_TIMEOUT = 20.0
INTERRUPT = [{"type": "user.interrupt"}]
# The keys of a full roster definition on session.agent.multiagent.agents[i].
FULL_DEFINITION_KEYS = {"type", "id", "version", "name", "description", "system", "model", "tools",
                        "mcp_servers", "skills", "execution_identity"}


# ----------------------------------------------------------------------------- team set-up


@dataclass
class Worker:
    name: str
    task: str
    reply: str
    delay_ms: int = 300
    # the worker's script turns; default: one turn answering `reply`
    turns: Optional[list] = None


@dataclass
class Team:
    session_id: str
    coordinator: object
    agents: dict = field(default_factory=dict)  # worker name -> agent


def three_workers(delay_ms: int = 300) -> list:
    return [
        Worker("researcher", "Research the history of tea.",
               "Research done: tea was first drunk in China, about 2700 BC.", delay_ms),
        Worker("analyst", "Analyse the tea market.",
               "Analysis done: the tea market grew 4 percent last year.", delay_ms),
        Worker("writer", "Write a short piece about tea.",
               "Draft done: a 200-word piece called 'A Cup of Tea'.", delay_ms),
    ]


def script(scripts_dir, name: str, doc: dict) -> str:
    """A scripted model from a dict (JSON is YAML); returns the model id."""
    return write_script(scripts_dir, name, json.dumps(doc, indent=2))


def start_thread_block(w: Worker) -> dict:
    return {"tool_use": {"name": "start_thread", "input": {"agent": w.name, "message": w.task}}}


def start_team(client, scripts_dir, workers: list, prompt: str = PROMPT) -> Team:
    """Create the workers, a coordinator whose roster holds them all, a session, and send the
    prompt that sets the coordinator off."""
    agents = {}
    for w in workers:
        model = script(scripts_dir, f"worker_{w.name}",
                       {"delay_ms": w.delay_ms, "turns": w.turns or [{"text": w.reply}]})
        agents[w.name] = client.beta.agents.create(name=w.name, model=model,
                                                   description=f"The team's {w.name}.")
    coord_model = script(scripts_dir, "coordinator", {"turns": [
        {"content": [start_thread_block(w) for w in workers]},
        {"text": WAITING},
        {"echo": True},
    ]})
    coordinator = client.beta.agents.create(
        name="coordinator", model=coord_model,
        multiagent={"type": "coordinator", "agents": [a.id for a in agents.values()]})
    s = client.beta.sessions.create(agent=coordinator.id, environment_id=make_env(client).id)
    send_text(client, s.id, prompt)
    return Team(session_id=s.id, coordinator=coordinator, agents=agents)


# ----------------------------------------------------------------------------- reading back


def of_type(events: list, t: str) -> list:
    return [e for e in events if e["type"] == t]


def text_of(ev: dict) -> str:
    return "\n".join(b["text"] for b in ev["content"] if b.get("type") == "text")


def count_of(t: str, n: int):
    """An events predicate for wait_events: at least n events of type t."""
    return lambda evs: len(of_type(evs, t)) >= n


def list_raw_thread_events(client, session_id: str, thread_id: str) -> list:
    """Every event of one thread as raw JSON, following `next_page` cursors."""
    return all_pages(client.beta.sessions.threads.events.with_raw_response.list, thread_id,
                     session_id=session_id, limit=1000)


def list_raw_threads(client, session_id: str, **params) -> list:
    """Every thread of the session as raw JSON, each validated against the SDK's type."""
    out = all_pages(client.beta.sessions.threads.with_raw_response.list, session_id, **params)
    for t in out:
        validate_model(BetaManagedAgentsSessionThread, t)
    return out


def split_threads(threads: list):
    """(primary, children) of a raw thread list; exactly one primary."""
    primaries = [t for t in threads if t.get("parent_thread_id") is None]
    assert len(primaries) == 1, f"expected one primary thread, got {threads}"
    return primaries[0], [t for t in threads if t.get("parent_thread_id") is not None]


def validate_all(events: list) -> None:
    for e in events:
        validate_event(e)
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "an event id is logged twice"


def agent_message_texts(events: list) -> list:
    return [text_of(e) for e in of_type(events, "agent.message")]


# ----------------------------------------------------------------------------- 1. fan-out


def test_fan_out_to_three_concurrent_workers(client, scripts_dir):
    workers = three_workers(delay_ms=300)
    team = start_team(client, scripts_dir, workers)
    sid = team.session_id
    evs = wait_idle(client, sid, timeout=TEAM_TIMEOUT)
    validate_all(evs)
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}
    assert len(of_type(evs, "session.status_idle")) == 1
    by_name = {w.name: w for w in workers}

    # start_thread: three built-in tool uses, allowed, each answered at once with its thread id
    uses = [e for e in of_type(evs, "agent.tool_use") if e["name"] == "start_thread"]
    assert [u["input"] for u in uses] == [{"agent": w.name, "message": w.task} for w in workers]
    assert all(u["evaluated_permission"] == "allow" for u in uses)
    created = of_type(evs, "session.thread_created")
    assert sorted(c["agent_name"] for c in created) == sorted(by_name)
    thread_of = {c["agent_name"]: c["session_thread_id"] for c in created}
    assert all(tid.startswith("sthr_") for tid in thread_of.values())
    assert len(set(thread_of.values())) == 3
    results = {r["tool_use_id"]: r for r in of_type(evs, "agent.tool_result")}
    for u in uses:
        r = results[u["id"]]
        assert not r.get("is_error"), r
        assert thread_of[u["input"]["agent"]] in text_of(r), f"the tool result names no thread id: {r}"

    # the tasks went out, and the replies came back, one per worker
    sent = of_type(evs, "agent.thread_message_sent")
    assert sorted((e["to_agent_name"], e["to_session_thread_id"], text_of(e)) for e in sent) == \
        sorted((w.name, thread_of[w.name], w.task) for w in workers)
    received = of_type(evs, "agent.thread_message_received")
    assert sorted((e["from_agent_name"], e["from_session_thread_id"], text_of(e)) for e in received) == \
        sorted((w.name, thread_of[w.name], w.reply) for w in workers)

    # the workers ran concurrently: all three were running before the first one went idle
    t = types_of(evs)
    running_at = [i for i, x in enumerate(t) if x == "session.thread_status_running"]
    idle_at = [i for i, x in enumerate(t) if x == "session.thread_status_idle"]
    assert len(running_at) == 3 and len(idle_at) == 3, t
    assert max(running_at) < min(idle_at), f"the workers ran one after another: {t}"
    assert {e["session_thread_id"] for e in of_type(evs, "session.thread_status_running")} == set(thread_of.values())
    for e in of_type(evs, "session.thread_status_idle"):
        assert e["stop_reason"] == {"type": "end_turn"}
        assert thread_of[e["agent_name"]] == e["session_thread_id"]

    # the coordinator waited, then its echo turn saw all three replies
    msgs = agent_message_texts(evs)
    assert msgs[0] == WAITING and len(msgs) == 2, msgs
    assert msgs[-1].startswith("echo: ")
    for w in workers:
        assert w.reply in msgs[-1], f"the coordinator's final turn misses {w.name}'s reply: {msgs[-1]!r}"
    # the final echo came after every reply was received
    last_received = max(i for i, x in enumerate(t) if x == "agent.thread_message_received")
    last_message = max(i for i, x in enumerate(t) if x == "agent.message")
    assert last_received < last_message

    # the threads API: one primary, three children of it
    threads = list_raw_threads(client, sid)
    assert len(threads) == 4, threads
    primary, children = split_threads(threads)
    assert primary["id"].startswith("sthr_") and primary["session_id"] == sid
    assert primary["agent"]["id"] == team.coordinator.id and primary["agent"]["name"] == "coordinator"
    assert "multiagent" not in primary["agent"], "the primary thread repeats the roster"
    assert {c["id"] for c in children} == set(thread_of.values())
    assert all(c["parent_thread_id"] == primary["id"] for c in children)
    assert all(th["status"] == "idle" for th in threads)
    # the primary thread's events are the session's events
    assert [e["id"] for e in list_raw_thread_events(client, sid, primary["id"])] == [e["id"] for e in evs]

    children_input = 0
    for c in children:
        name = c["agent"]["name"]
        w = by_name[name]
        assert c["agent"]["id"] == team.agents[name].id
        assert c["id"] == thread_of[name]
        assert c["usage"] is not None, f"{name}'s thread has no usage after going idle"
        assert c["usage"]["input_tokens"] > 0 and c["usage"]["output_tokens"] > 0
        children_input += c["usage"]["input_tokens"]

        tevs = list_raw_thread_events(client, sid, c["id"])
        validate_all(tevs)
        first = tevs[0]
        assert first["type"] == "agent.thread_message_received", types_of(tevs)
        assert first["from_session_thread_id"] == primary["id"]
        assert first.get("from_agent_name") is None, "a message from the primary agent names an agent"
        assert text_of(first) == w.task
        assert agent_message_texts(tevs) == [w.reply]
        back = of_type(tevs, "agent.thread_message_sent")
        assert len(back) == 1, types_of(tevs)
        assert back[0]["to_session_thread_id"] == primary["id"] and text_of(back[0]) == w.reply
        assert back[0].get("to_agent_name") is None
        assert "span.model_request_start" in types_of(tevs)
        assert tevs[-1]["type"] == "session.status_idle" and tevs[-1]["stop_reason"] == {"type": "end_turn"}
        # the worker's log holds none of the coordinator's own events
        assert WAITING not in [text_of(e) for e in of_type(tevs, "agent.message")]

    session = client.beta.sessions.retrieve(sid)
    assert session.status == "idle"
    assert session.usage.input_tokens >= children_input, \
        f"session usage {session.usage.input_tokens} leaves out thread tokens ({children_input})"
    validate_model(BetaManagedAgentsSession, client.beta.sessions.with_raw_response.retrieve(sid).json())


# ----------------------------------------------------------------------------- 2. roster


def test_roster_is_validated_and_resolved(client):
    w1 = make_agent(client, name="researcher", system="r1")
    client.beta.agents.update(w1.id, system="r2")  # latest version: 2
    w2 = make_agent(client, name="analyst", system="a1")
    nested = make_agent(client, name="nested", multiagent={"type": "coordinator", "agents": [w2.id]})
    old = make_agent(client, name="old")
    client.beta.agents.archive(old.id)
    many = [make_agent(client, name=f"w{i}").id for i in range(21)]

    bad = {
        "empty": {"type": "coordinator", "agents": []},
        "too_many": {"type": "coordinator", "agents": many},
        "duplicate": {"type": "coordinator", "agents": [w1.id, w1.id]},
        "duplicate_forms": {"type": "coordinator", "agents": [w1.id, {"type": "agent", "id": w1.id}]},
        "two_selves": {"type": "coordinator", "agents": [{"type": "self"}, {"type": "self"}]},
        "unknown": {"type": "coordinator", "agents": ["agent_doesnotexist"]},
        "archived": {"type": "coordinator", "agents": [old.id]},
        "nested": {"type": "coordinator", "agents": [w2.id, nested.id]},
        "advisor": {"type": "coordinator", "agents": [w1.id, {"type": "advisor", "model": "claude-opus-4-6"}]},
        "multiagent_20261001": {"type": "multiagent_20261001"},
    }
    for label, multiagent in bad.items():
        with pytest.raises(anthropic.BadRequestError) as ei:
            client.beta.agents.create(name=f"bad-{label}", model="scripted/echo", multiagent=multiagent)
        assert ei.value.body["error"]["type"] == "invalid_request_error", (label, ei.value.body)
        assert "multiagent" in ei.value.message, (label, ei.value.message)
    assert not [a.name for a in client.beta.agents.list() if a.name.startswith("bad-")], \
        "a refused agent was stored"

    # a valid roster: a bare id (latest version), a pinned reference, and self
    lead = client.beta.agents.create(
        name="lead", model="scripted/echo", system="lead v1",
        multiagent={"type": "coordinator", "agents": [
            w1.id, {"type": "agent", "id": w2.id, "version": 1}, {"type": "self"}]})
    want = {"type": "coordinator", "agents": [
        {"type": "agent", "id": w1.id, "version": 2},
        {"type": "agent", "id": w2.id, "version": 1},
        {"type": "agent", "id": lead.id, "version": 1},
    ]}
    raw = client.beta.agents.with_raw_response.retrieve(lead.id).json()
    validate_model(BetaManagedAgentsAgent, raw)
    assert raw["multiagent"] == want
    assert lead.multiagent.model_dump() == want

    # an update resolves `self` to the version being written
    client.beta.agents.update(lead.id, system="lead v2", multiagent={
        "type": "coordinator", "agents": [w1.id, {"type": "self"}]})
    raw = client.beta.agents.with_raw_response.retrieve(lead.id).json()
    validate_model(BetaManagedAgentsAgent, raw)
    assert raw["version"] == 2
    assert raw["multiagent"] == {"type": "coordinator", "agents": [
        {"type": "agent", "id": w1.id, "version": 2}, {"type": "agent", "id": lead.id, "version": 2}]}

    # sessions.create pins the roster as full agent definitions
    s = client.beta.sessions.create(agent=lead.id, environment_id=make_env(client).id)
    raw_session = client.beta.sessions.with_raw_response.retrieve(s.id).json()
    validate_model(BetaManagedAgentsSession, raw_session)
    validate_model(BetaManagedAgentsSessionAgent, raw_session["agent"])
    ma = raw_session["agent"]["multiagent"]
    assert ma["type"] == "coordinator"
    assert [(a["type"], a["id"], a["version"], a["name"]) for a in ma["agents"]] == [
        ("agent", w1.id, 2, "researcher"), ("agent", lead.id, 2, "lead")]
    for a in ma["agents"]:
        assert set(a) == FULL_DEFINITION_KEYS, sorted(a)
        assert a["model"]["id"] == "scripted/echo"
    assert [a["system"] for a in ma["agents"]] == ["r2", "lead v2"]
    # a later version of a roster agent does not move the session's roster
    client.beta.agents.update(w1.id, system="r3")
    again = client.beta.sessions.retrieve(s.id)
    assert [(a.id, a.version) for a in again.agent.multiagent.agents] == [(w1.id, 2), (lead.id, 2)]


# ----------------------------------------------------------------------------- 3. threads API edges


def test_threads_api_edges(client, scripts_dir):
    worker = Worker("researcher", "Research the history of tea.", "Research done: tea is old.", delay_ms=1000)
    team = start_team(client, scripts_dir, [worker])
    sid = team.session_id

    # a live stream on the child, opened while its model is still thinking
    evs = wait_events(client, sid, count_of("session.thread_created", 1), timeout=TEAM_TIMEOUT,
                      what="the worker thread")
    child_id = of_type(evs, "session.thread_created")[0]["session_thread_id"]
    live_stream = client.beta.sessions.threads.events.stream(child_id, session_id=sid)
    live = collect_stream(live_stream, lambda item, items: item.type == "session.status_idle",
                          timeout=TEAM_TIMEOUT)
    assert "agent.message" in types_of(live), "the live thread stream missed the worker's reply"
    assert [i.content[0].text for i in live if i.type == "agent.message"] == [worker.reply]

    wait_idle(client, sid, timeout=TEAM_TIMEOUT)
    tevs = list_raw_thread_events(client, sid, child_id)
    validate_all(tevs)
    ids = [e["id"] for e in tevs]
    assert [i.id for i in live] == ids[len(ids) - len(live):], "the live stream is not the log's tail"

    # replay: a stream resumed after the thread's first event gives the rest of its log, once
    replay_stream = client.beta.sessions.threads.events.stream(
        child_id, session_id=sid, extra_headers={"Last-Event-ID": ids[0]})
    replay = collect_stream(replay_stream, lambda item, items: item.id == ids[-1], timeout=TEAM_TIMEOUT)
    assert [i.id for i in replay] == ids[1:]
    assert types_of(replay) == types_of(tevs)[1:]

    threads = list_raw_threads(client, sid)
    primary, [child] = split_threads(threads)
    assert child["id"] == child_id
    raw_child = client.beta.sessions.threads.with_raw_response.retrieve(child_id, session_id=sid).json()
    validate_model(BetaManagedAgentsSessionThread, raw_child)
    assert raw_child["status"] == "idle" and raw_child["archived_at"] is None
    assert raw_child["parent_thread_id"] == primary["id"]
    # the statuses filter
    assert {t["id"] for t in list_raw_threads(client, sid, statuses=["idle"])} == {primary["id"], child_id}
    assert list_raw_threads(client, sid, statuses=["running"]) == []

    # unknown threads are 404, in this session and across sessions
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.threads.retrieve("sthr_doesnotexist", session_id=sid)
    other = client.beta.sessions.create(agent=make_agent(client).id, environment_id=make_env(client).id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.threads.retrieve(child_id, session_id=other.id)

    # the primary thread cannot be archived; a finished child can
    with pytest.raises(anthropic.BadRequestError):
        client.beta.sessions.threads.archive(primary["id"], session_id=sid)
    assert client.beta.sessions.threads.retrieve(primary["id"], session_id=sid).archived_at is None
    archived = client.beta.sessions.threads.archive(child_id, session_id=sid)
    assert archived.id == child_id and archived.archived_at is not None
    got = client.beta.sessions.threads.with_raw_response.retrieve(child_id, session_id=sid).json()
    validate_model(BetaManagedAgentsSessionThread, got)
    assert got["archived_at"] is not None
    # archiving a thread does not touch the session
    assert client.beta.sessions.retrieve(sid).status == "idle"


# ----------------------------------------------------------------------------- 4. failing worker


def test_a_failing_worker_delivers_an_error_reply(client, scripts_dir):
    good = Worker("researcher", "Research the history of tea.", "Research done: tea is old.")
    broken = Worker("analyst", "Analyse the tea market.", "never said",
                    turns=[{"error": {"status": 400, "message": "bad request from upstream"}}])
    team = start_team(client, scripts_dir, [good, broken])
    sid = team.session_id
    evs = wait_idle(client, sid, timeout=TEAM_TIMEOUT)
    validate_all(evs)
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}
    assert "session.status_terminated" not in types_of(evs)
    session = client.beta.sessions.retrieve(sid)
    assert session.status == "idle"

    thread_of = {c["agent_name"]: c["session_thread_id"] for c in of_type(evs, "session.thread_created")}
    received = {e["from_agent_name"]: e for e in of_type(evs, "agent.thread_message_received")}
    assert set(received) == {"researcher", "analyst"}
    assert text_of(received["researcher"]) == good.reply
    failure = text_of(received["analyst"])
    assert received["analyst"]["from_session_thread_id"] == thread_of["analyst"]
    assert "fail" in failure.lower(), f"the error reply does not say the thread failed: {failure!r}"

    # the coordinator carried on: its final turn saw the good reply and the failure
    final = agent_message_texts(evs)[-1]
    assert good.reply in final and failure in final, final

    # the broken worker's thread: no reply, the upstream error logged, not left running
    tevs = list_raw_thread_events(client, sid, thread_of["analyst"])
    validate_all(tevs)
    assert "agent.message" not in types_of(tevs)
    errors = of_type(tevs, "session.error")
    assert errors and "bad request from upstream" in errors[-1]["error"]["message"], types_of(tevs)
    threads = {t["id"]: t for t in list_raw_threads(client, sid)}
    assert threads[thread_of["analyst"]]["status"] != "running"
    assert threads[thread_of["researcher"]]["status"] == "idle"


# ----------------------------------------------------------------------------- 5. crash


def test_workers_resume_after_a_crash(server, client, scripts_dir):
    workers = three_workers(delay_ms=1500)
    team = start_team(client, scripts_dir, workers)
    sid = team.session_id
    wait_events(client, sid, count_of("session.thread_status_running", 3), timeout=TEAM_TIMEOUT,
                what="three running workers")
    server.kill()
    server.restart()

    evs = wait_idle(client, sid, timeout=3 * TEAM_TIMEOUT)
    validate_all(evs)
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}
    final = agent_message_texts(evs)[-1]
    assert final.startswith("echo: ")
    for w in workers:
        assert w.reply in final, f"the final echo misses {w.name}'s reply: {final!r}"
    # nothing was started or delivered twice
    assert sorted(e["agent_name"] for e in of_type(evs, "session.thread_created")) == sorted(w.name for w in workers)
    assert sorted(text_of(e) for e in of_type(evs, "agent.thread_message_received")) == \
        sorted(w.reply for w in workers)
    msgs = agent_message_texts(evs)
    assert len(msgs) == len(set(msgs)), f"duplicate agent.message in the session: {msgs}"

    threads = list_raw_threads(client, sid)
    assert len(threads) == 4
    assert all(t["status"] == "idle" for t in threads), [(t["id"], t["status"]) for t in threads]
    primary, children = split_threads(threads)
    by_name = {w.name: w for w in workers}
    for t in threads:
        tevs = list_raw_thread_events(client, sid, t["id"])
        validate_all(tevs)
        texts = agent_message_texts(tevs)
        assert len(texts) == len(set(texts)), f"duplicate agent.message in thread {t['id']}: {texts}"
        if t["id"] != primary["id"]:
            assert texts == [by_name[t["agent"]["name"]].reply], (t["agent"]["name"], texts)
            assert len(of_type(tevs, "agent.thread_message_sent")) == 1


# ----------------------------------------------------------------------------- 6. interrupt


def test_interrupt_stops_the_coordinator_and_every_worker(client, scripts_dir):
    workers = three_workers(delay_ms=20_000)
    team = start_team(client, scripts_dir, workers)
    sid = team.session_id
    wait_events(client, sid,
                lambda evs: len(of_type(evs, "session.thread_status_running")) >= 3
                and WAITING in agent_message_texts(evs),
                timeout=TEAM_TIMEOUT, what="three running workers and a waiting coordinator")
    assert client.beta.sessions.retrieve(sid).status == "running", "the session idled while its workers ran"

    t0 = time.monotonic()
    client.beta.sessions.events.send(sid, events=INTERRUPT)
    # well before the workers' 20 s replies could arrive
    evs = wait_idle(client, sid, timeout=10)
    elapsed = time.monotonic() - t0
    assert elapsed < 10, f"idle came {elapsed:.1f}s after the interrupt"
    validate_all(evs)
    assert "user.interrupt" in types_of(evs)
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}

    def children_idle():
        _, children = split_threads(list_raw_threads(client, sid))
        return children if len(children) == 3 and all(c["status"] == "idle" for c in children) else None

    children = wait_until(children_idle, timeout=10, what="every worker thread to be idle")
    assert list_raw_threads(client, sid, statuses=["running"]) == []
    # no worker replied: each was stopped mid-request
    evs = list_raw_events(client, sid)
    validate_all(evs)
    replies = {w.reply for w in workers}
    assert not [text_of(e) for e in of_type(evs, "agent.thread_message_received") if text_of(e) in replies]
    for c in children:
        tevs = list_raw_thread_events(client, sid, c["id"])
        validate_all(tevs)
        assert "agent.message" not in types_of(tevs), f"{c['agent']['name']} replied despite the interrupt"
        assert tevs[-1]["type"] == "session.status_idle", types_of(tevs)
    assert agent_message_texts(evs) == [WAITING], "the coordinator took another turn after the interrupt"


# ----------------------------------------------------------------------------- worker calls


LOOKUP_TOOL = {
    "type": "custom",
    "name": "lookup",
    "description": "Look a fact up in the user's notes.",
    "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
}


@pytest.mark.parametrize("names_thread", [True, False])
def test_a_workers_custom_tool_call_is_answered_from_the_session_stream(client, scripts_dir, names_thread):
    """A worker's custom tool call shows on the session's log, marked with its thread, like the
    SDK's session tool runner expects; the answer (naming the thread or not) reaches the
    worker, which then replies to the coordinator."""
    worker_model = script(scripts_dir, "worker_librarian", {"turns": [
        {"tool_use": {"name": "lookup", "input": {"q": "oolong"}}},
        {"text": "Oolong is partly oxidised."},
    ]})
    librarian = client.beta.agents.create(name="librarian", model=worker_model, tools=[LOOKUP_TOOL])
    coord_model = script(scripts_dir, "coordinator", {"turns": [
        {"tool_use": {"name": "start_thread", "input": {"agent": "librarian", "message": "What is oolong?"}}},
        {"text": WAITING},
        {"echo": True},
    ]})
    coordinator = client.beta.agents.create(
        name="coordinator", model=coord_model,
        multiagent={"type": "coordinator", "agents": [librarian.id]})
    s = client.beta.sessions.create(agent=coordinator.id, environment_id=make_env(client).id)
    send_text(client, s.id, PROMPT)

    evs = wait_events(client, s.id, count_of("agent.custom_tool_use", 1), timeout=TEAM_TIMEOUT,
                      what="the worker's call on the session's log")
    [call] = of_type(evs, "agent.custom_tool_use")
    tid = call["session_thread_id"]
    assert tid.startswith("sthr_") and call["name"] == "lookup"
    evs = wait_events(client, s.id, count_of("session.thread_status_idle", 1), timeout=TEAM_TIMEOUT,
                      what="the worker waiting on the user")
    [waiting] = of_type(evs, "session.thread_status_idle")
    assert waiting["stop_reason"] == {"type": "requires_action", "event_ids": [call["id"]]}
    assert client.beta.sessions.retrieve(s.id).status == "running", "the coordinator still waits"
    # The worker's own log holds the same call, unmarked.
    own = [e for e in list_raw_thread_events(client, s.id, tid) if e["type"] == "agent.custom_tool_use"]
    assert [e["id"] for e in own] == [call["id"]] and "session_thread_id" not in own[0]

    answer = {"type": "user.custom_tool_result", "custom_tool_use_id": call["id"],
              "content": [{"type": "text", "text": "partly oxidised tea"}]}
    if names_thread:
        answer["session_thread_id"] = tid
    client.beta.sessions.events.send(s.id, events=[answer])
    evs = wait_idle(client, s.id, timeout=TEAM_TIMEOUT)
    validate_all(evs)
    msgs = agent_message_texts(evs)
    assert "Oolong is partly oxidised." in msgs[-1], msgs
    # The answer is on both logs, so a client reading either sees the call answered.
    [copy] = of_type(evs, "user.custom_tool_result")
    assert copy["session_thread_id"] == tid
    tevs = list_raw_thread_events(client, s.id, tid)
    validate_all(tevs)
    [given] = of_type(tevs, "user.custom_tool_result")
    assert given["id"] == copy["id"] and given["custom_tool_use_id"] == call["id"]


def test_start_thread_past_the_limit_is_an_error_result(server_factory, scripts_dir):
    server = server_factory(env={"AGENTD_MAX_THREADS": "2"})
    client = server.client()
    workers = three_workers()
    team = start_team(client, scripts_dir, workers)
    evs = wait_idle(client, team.session_id, timeout=TEAM_TIMEOUT)
    validate_all(evs)
    results = of_type(evs, "agent.tool_result")
    assert [bool(r.get("is_error")) for r in results] == [False, False, True]
    assert "limit" in text_of(results[2])
    assert len(of_type(evs, "session.thread_created")) == 2
    assert len(of_type(evs, "agent.thread_message_received")) == 2


def test_an_answer_naming_the_primary_thread_reaches_the_coordinator(client, scripts_dir):
    model = script(scripts_dir, "asker", {"turns": [
        {"tool_use": {"name": "lookup", "input": {"q": "x"}}},
        {"echo": True},
    ]})
    agent = client.beta.agents.create(name="asker", model=model, tools=[LOOKUP_TOOL])
    s = client.beta.sessions.create(agent=agent.id, environment_id=make_env(client).id)
    send_text(client, s.id, "look it up")
    evs = wait_events(client, s.id, count_of("agent.custom_tool_use", 1), timeout=TEAM_TIMEOUT,
                      what="the call")
    [call] = of_type(evs, "agent.custom_tool_use")
    primary, _ = split_threads(list_raw_threads(client, s.id))
    client.beta.sessions.events.send(s.id, events=[{
        "type": "user.custom_tool_result", "custom_tool_use_id": call["id"],
        "session_thread_id": primary["id"], "content": [{"type": "text", "text": "found"}]}])
    evs = wait_idle(client, s.id, count=2, timeout=TEAM_TIMEOUT)
    validate_all(evs)
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}
    assert agent_message_texts(evs)[-1] == "echo: tool result received"


def test_an_interrupt_naming_the_primary_thread_stops_only_the_coordinator(client, scripts_dir):
    workers = three_workers(delay_ms=1500)
    team = start_team(client, scripts_dir, workers)
    sid = team.session_id
    wait_events(client, sid,
                lambda evs: len(of_type(evs, "session.thread_status_running")) >= 3
                and WAITING in agent_message_texts(evs),
                timeout=TEAM_TIMEOUT, what="three running workers")
    primary, _ = split_threads(list_raw_threads(client, sid))
    client.beta.sessions.events.send(sid, events=[{"type": "user.interrupt", "session_thread_id": primary["id"]}])
    # The workers go on and reply; the coordinator, stopped, takes no further turn.
    evs = wait_events(client, sid, count_of("agent.thread_message_received", 3), timeout=TEAM_TIMEOUT,
                      what="the three replies")
    evs = wait_idle(client, sid, timeout=TEAM_TIMEOUT)
    validate_all(evs)
    assert {text_of(e) for e in of_type(evs, "agent.thread_message_received")} == {w.reply for w in workers}
    assert agent_message_texts(evs) == [WAITING]
