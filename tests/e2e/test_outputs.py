"""What a session produces and what it spends, through the official SDK against the real
binary: files the agent leaves in /mnt/session/outputs/ become Files API files scoped to the
session (`files.list(scope_id=...)`, `files.download`), crash-safe across kill -9; the session's
`usage.list_cost` follows the price table; tool configs round-trip with no SDK warning."""

import hashlib
import json
import time
import warnings

import anthropic
from anthropic.types.beta import BetaFileMetadata

from conftest import (make_env, send_text, validate_model, wait_idle, wait_until, write_script)

TOOLSET = {"type": "agent_toolset_20260401"}
OUT = "/mnt/session/outputs"

TWO_FILES = f"""
turns:
  - tool_use:
      name: bash
      input:
        command: "mkdir -p {OUT}/charts && printf '# Report\\\\n\\\\nAll good.\\\\n' > {OUT}/report.md && printf 'x,y\\\\n1,2\\\\n' > {OUT}/charts/data.csv && ls -R {OUT}"
  - text: "Both files are in the outputs."
"""


def scoped(client, sid):
    return list(client.beta.files.list(scope_id=sid, limit=1000))


def session_of(client, model):
    agent = client.beta.agents.create(name="writer", model=model, tools=[TOOLSET])
    return client.beta.sessions.create(agent=agent.id, environment_id=make_env(client).id)


def test_two_output_files_are_listed_by_scope_and_download_intact(server, client, scripts_dir):
    model = write_script(scripts_dir, "two-files", TWO_FILES + '  - text: "Nothing new."\n')
    s = session_of(client, model)
    other = session_of(client, model)
    send_text(client, s.id, "write the report")
    wait_idle(client, s.id, timeout=30)

    files = scoped(client, s.id)
    assert sorted(f.filename for f in files) == ["charts/data.csv", "report.md"]
    for f in files:
        raw = client.beta.files.with_raw_response.retrieve_metadata(f.id).http_response.json()
        validate_model(BetaFileMetadata, raw)
        assert f.scope is not None and (f.scope.type, f.scope.id) == ("session", s.id)
        assert f.downloadable is True
    by_name = {f.filename: f for f in files}
    want = {"report.md": (b"# Report\n\nAll good.\n", "text/plain"),
            "charts/data.csv": (b"x,y\n1,2\n", "text/csv")}
    for name, (data, mime) in want.items():
        f = by_name[name]
        assert (f.size_bytes, f.mime_type) == (len(data), mime)
        got = client.beta.files.download(f.id)
        assert got.read() == data
        assert got.headers["content-type"].startswith(mime)
        assert "attachment" in got.headers["content-disposition"]

    # Another session's scope holds nothing of them, before and after its own turn.
    assert scoped(client, other.id) == []
    send_text(client, other.id, "write yours")
    wait_idle(client, other.id, timeout=30)
    theirs = scoped(client, other.id)
    assert len(theirs) == 2 and not {f.id for f in theirs} & {f.id for f in files}
    assert {f.id for f in scoped(client, s.id)} == {f.id for f in files}
    # The unscoped list holds both sessions' files; `ids` with a scope keeps to it.
    everything = {f.id for f in client.beta.files.list(limit=1000)}
    assert {f.id for f in files + theirs} <= everything
    mixed = client.beta.files.list(ids=[files[0].id, theirs[0].id], scope_id=s.id)
    assert [f.id for f in mixed] == [files[0].id]

    # A key of another workspace sees no file in that scope.
    stranger = server.client(key=server.create_key("elsewhere"))
    assert list(stranger.beta.files.list(scope_id=s.id)) == []

    # A file the user deleted does not come back while its bytes stay as they were.
    client.beta.files.delete(by_name["report.md"].id)
    send_text(client, s.id, "anything else?")
    wait_idle(client, s.id, count=2, timeout=30)
    assert [f.filename for f in scoped(client, s.id)] == ["charts/data.csv"]


def test_files_are_collected_at_archive_too(server, client, scripts_dir):
    # The agent leaves a file after its turn has ended (a background job); archiving collects it.
    # A file over the upload limit (32 MiB) is not collected.
    script = f"""
turns:
  - tool_use:
      name: bash
      input: {{command: "head -c 34000000 /dev/zero > {OUT}/too-big.bin; (sleep 1; echo late > {OUT}/late.txt) > /dev/null 2>&1 &"}}
  - text: "started"
"""
    s = session_of(client, write_script(scripts_dir, "late", script))
    send_text(client, s.id, "go")
    wait_idle(client, s.id, timeout=30)
    time.sleep(2)
    client.beta.sessions.archive(s.id)
    files = scoped(client, s.id)
    assert [f.filename for f in files] == ["late.txt"]
    assert client.beta.files.download(files[0].id).read() == b"late\n"


N = 150


def test_an_overwrite_after_kill_9_during_collection_is_one_new_version(server, client, scripts_dir):
    script = TWO_FILES.replace('  - text: "Both files are in the outputs."', f"""  - text: "Both files are in the outputs."
  - tool_use:
      name: bash
      input:
        command: "for i in $(seq -w 1 {N}); do yes \\"line $i\\" | head -c 200000 > {OUT}/f$i.bin; done; printf '# Report v2\\\\n' > {OUT}/report.md; echo written"
  - text: "Overwritten."
""")
    s = session_of(client, write_script(scripts_dir, "overwrite", script))
    send_text(client, s.id, "first")
    wait_idle(client, s.id, timeout=30)
    first = {f.filename: f for f in scoped(client, s.id)}
    assert set(first) == {"report.md", "charts/data.csv"}

    send_text(client, s.id, "second")
    # Kill while the second turn's files are being collected: some are listed, not all.
    wait_until(lambda: 2 < len(scoped(client, s.id)) < N + 2, timeout=60, interval=0.005,
               what="collection under way")
    server.kill()
    server.restart()
    client = server.client()
    wait_idle(client, s.id, count=2, timeout=60)

    files = scoped(client, s.id)
    names = [f.filename for f in files]
    assert len(names) == len(set(names)), f"listed twice: {sorted(n for n in names if names.count(n) > 1)}"
    assert set(names) == {"report.md", "charts/data.csv"} | {f"f{i:03d}.bin" for i in range(1, N + 1)}
    report = next(f for f in files if f.filename == "report.md")
    assert report.id != first["report.md"].id, "an overwritten file gets a new version"
    assert client.beta.files.download(report.id).read() == b"# Report v2\n"
    # The old version is gone, not a stale copy beside the new one; the untouched file stays.
    try:
        client.beta.files.retrieve_metadata(first["report.md"].id)
        raise AssertionError("the old version is still there")
    except anthropic.NotFoundError:
        pass
    assert next(f for f in files if f.filename == "charts/data.csv").id == first["charts/data.csv"].id
    for f in files:
        if f.filename.startswith("f"):
            i = f.filename[1:4]
            line = f"line {i}\n".encode()
            want = (line * (200000 // len(line) + 1))[:200000]
            assert hashlib.sha256(client.beta.files.download(f.id).read()).digest() == \
                hashlib.sha256(want).digest(), f.filename


PRICES = """
prices:
  scripted/*: {input: 1000, output: 3000}
"""

GRADED = """
turns:
  - text: "A first answer that is long enough to cost a little something at these prices."
  - text: "A revised answer."
grades:
  - {result: needs_revision, explanation: "more"}
  - {result: satisfied, explanation: "good"}
"""


def test_list_cost_follows_the_price_table_grader_included(server_factory, scripts_dir, tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES)
    srv = server_factory(env={"AGENTD_PRICES": str(prices)})
    client = srv.client()
    model = write_script(scripts_dir, "graded", GRADED)
    agent = client.beta.agents.create(name="priced", model=model)
    s = client.beta.sessions.create(agent=agent.id, environment_id=make_env(client).id)
    client.beta.sessions.events.send(s.id, events=[{
        "type": "user.define_outcome", "description": "an answer",
        "rubric": {"type": "text", "content": "it answers"}}])
    send_text(client, s.id, "answer")

    def done():
        x = client.beta.sessions.retrieve(s.id)
        return x.status == "idle" and x.outcome_evaluations and \
            x.outcome_evaluations[0].result == "satisfied"
    wait_until(done, timeout=30)
    x = client.beta.sessions.retrieve(s.id)
    u = x.usage
    # Every call: the turns and two grader calls, all on the priced model.
    evs = list(client.beta.sessions.events.list(s.id, limit=1000))
    spans = [e for e in evs if e.type == "span.model_request_end"]
    grades = [e for e in evs if e.type == "span.outcome_evaluation_end"]
    assert len(spans) >= 2 and len(grades) == 2
    tin = sum(e.model_usage.input_tokens for e in spans) + sum(e.usage.input_tokens for e in grades)
    tout = sum(e.model_usage.output_tokens for e in spans) + sum(e.usage.output_tokens for e in grades)
    assert (u.input_tokens, u.output_tokens) == (tin, tout)
    pico = tin * 1000 * 10**6 + tout * 3000 * 10**6
    cents = pico // 10**10 + (1 if pico % 10**10 >= 5 * 10**9 else 0)
    assert cents > 0
    assert u.list_cost is not None
    assert (u.list_cost.amount, u.list_cost.currency) == (str(cents), "USD")
    # The primary thread's usage carries the same figure; the usage events snapshot it.
    t = client.beta.sessions.threads.list(s.id).data[0]
    assert t.usage.list_cost.amount == str(cents)
    snaps = [e for e in evs if e.type == "session.usage"]
    assert snaps and snaps[-1].usage.list_cost.currency == "USD"

    # A model the table does not name costs nothing; a Claude model has its list price.
    srv2 = server_factory()
    c2 = srv2.client()
    free = c2.beta.sessions.create(agent=c2.beta.agents.create(name="e", model="scripted/echo").id,
                                   environment_id=make_env(c2).id)
    send_text(c2, free.id, "hi")
    wait_idle(c2, free.id)
    fu = c2.beta.sessions.retrieve(free.id).usage
    assert fu.input_tokens > 0 and fu.list_cost.amount == "0"


def test_tool_configs_round_trip_through_the_sdk_with_no_warning(client):
    configs = [{"name": "bash", "enabled": False},
               {"name": "web_fetch"},
               {"name": "read", "permission_policy": {"type": "always_ask"}}]
    a = client.beta.agents.create(name="cfg", model="scripted/echo",
                                  tools=[{**TOOLSET, "configs": configs}])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = client.beta.agents.retrieve(a.id)
        assert [c.type for c in got.tools[0].configs] == ["bash", "web_fetch", "read"]
        dumped = [t.model_dump() for t in got.tools]
        json.dumps([t.model_dump(mode="json") for t in got.tools])
        got.model_dump_json()
        # What the SDK dumped goes back as it is, and comes back the same.
        again = client.beta.agents.update(a.id, version=got.version, tools=dumped)
        assert again.tools[0].model_dump() == dumped[0]
        for c in again.tools[0].configs:
            validate_model(type(c), c.model_dump(mode="json"))


def test_each_thread_is_priced_at_its_own_model_and_the_session_sums_them(server_factory, scripts_dir,
                                                                          tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("prices:\n  scripted/lead: {input: 2000, output: 6000}\n"
                      "  scripted/helper: {input: 500, output: 500}\n")
    srv = server_factory(env={"AGENTD_PRICES": str(prices)})
    client = srv.client()
    helper = client.beta.agents.create(name="helper", model=write_script(
        scripts_dir, "helper", 'turns:\n  - text: "' + "Helped at length. " * 20 + '"\n'))
    lead = client.beta.agents.create(
        name="lead", model=write_script(scripts_dir, "lead", json.dumps({"turns": [
            {"tool_use": {"name": "start_thread", "input": {"agent": "helper", "message": "help"}}},
            {"text": "Waiting."},
            {"echo": True}]})),
        multiagent={"type": "coordinator", "agents": [helper.id]})
    s = client.beta.sessions.create(agent=lead.id, environment_id=make_env(client).id)
    send_text(client, s.id, "go")
    wait_idle(client, s.id, timeout=30)

    def pico(u, rate_in, rate_out):
        return u.input_tokens * rate_in * 10**6 + u.output_tokens * rate_out * 10**6

    def cents(p):
        return str(p // 10**10 + (1 if p % 10**10 >= 5 * 10**9 else 0))

    threads = client.beta.sessions.threads.list(s.id).data
    primary = next(t for t in threads if t.parent_thread_id is None)
    worker = next(t for t in threads if t.parent_thread_id is not None)
    lead_pico, helper_pico = pico(primary.usage, 2000, 6000), pico(worker.usage, 500, 500)
    assert helper_pico > 0 and lead_pico > 0
    assert worker.usage.list_cost.amount == cents(helper_pico)
    assert primary.usage.list_cost.amount == cents(lead_pico)
    assert client.beta.sessions.retrieve(s.id).usage.list_cost.amount == cents(lead_pico + helper_pico)
