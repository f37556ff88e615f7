"""Session events through the SDK: send, list (pagination, order, type and time filters), the
SSE stream (sync and async), resuming a stream without loss, and `event_deltas` previews."""

import json
import threading

import anthropic
import httpx2
import pydantic
import pytest
from anthropic.types.beta.sessions import BetaManagedAgentsStreamSessionEvents

import fake_anthropic as fa
from conftest import (
    _unknown_fields, acollect_stream, collect_stream, idle_count, list_raw_events, make_agent,
    make_env, raw_request, send_text, types_of, user_message, wait_events, wait_idle, write_script,
)

TURN = [
    "user.message",
    "session.status_running",
    "span.model_request_start",
    "agent.message",
    "span.model_request_end",
    "session.usage",
    "session.status_idle",
]


def new_session(client, model="scripted/echo", **kw):
    a = make_agent(client, model=model, **kw)
    return client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)


def nth_idle(n):
    return lambda item, items: sum(1 for i in items if i.type == "session.status_idle") >= n


def run_turns(client, sid, n):
    for i in range(n):
        send_text(client, sid, f"turn {i}")
        wait_idle(client, sid, count=i + 1)
    return list_raw_events(client, sid)


# ----------------------------------------------------------------------------- send


def test_send_a_batch(client, fake_upstream):
    s = new_session(client, model="claude-sonnet-4-6")
    fake_upstream.enqueue(fa.reply_text("got both"))
    sent = client.beta.sessions.events.send(s.id, events=[user_message("part one"), user_message("part two")])
    assert [e.type for e in sent.data] == ["user.message", "user.message"]
    assert [e.content[0].text for e in sent.data] == ["part one", "part two"]
    assert len({e.id for e in sent.data}) == 2
    assert all(e.processed_at is not None for e in sent.data)
    evs = wait_idle(client, s.id)
    assert types_of(evs) == ["user.message", "user.message"] + TURN[1:]
    assert [e["id"] for e in evs[:2]] == [e.id for e in sent.data]
    # one model request answers the whole batch, in order
    reqs = fake_upstream.messages_requests()
    assert len(reqs) == 1
    texts = [b["text"] for b in reqs[0].blocks("text")]
    assert texts == ["part one", "part two"]


def test_send_during_a_turn_is_answered_after_it(client, scripts_dir):
    model = write_script(scripts_dir, "slowish", "delay_ms: 300\nturns:\n  - text: one\n  - text: two\n")
    s = new_session(client, model=model)
    send_text(client, s.id, "first")
    # "During a turn": once its model request is under way. Sent earlier, both messages are
    # rightly one turn's input (seen on a loaded machine: the wake had not begun yet).
    wait_events(client, s.id, lambda evs: "span.model_request_start" in types_of(evs), what="the first request")
    send_text(client, s.id, "second, while running")
    # the session rests only after both are answered
    evs = wait_events(client, s.id, lambda evs: len([e for e in evs if e["type"] == "agent.message"]) == 2
                      and evs[-1]["type"] == "session.status_idle", what="two answers")
    texts = [e["content"][0]["text"] for e in evs if e["type"] == "agent.message"]
    assert texts == ["one", "two"]
    assert idle_count(evs) == 1, "the session went idle between the two answers"


# ----------------------------------------------------------------------------- list


def test_list_pagination_order_and_filters(client):
    s = new_session(client)
    full = run_turns(client, s.id, 4)
    assert types_of(full) == TURN * 4
    ids = [e["id"] for e in full]
    assert len(set(ids)) == len(ids)

    # default order is ascending; the SDK's auto-pagination walks every page
    auto = [e.id for e in client.beta.sessions.events.list(s.id, limit=5)]
    assert auto == ids
    first = client.beta.sessions.events.list(s.id, limit=5)
    assert [e.id for e in first.data] == ids[:5]
    assert first.has_next_page()
    second = first.get_next_page()
    assert [e.id for e in second.data] == ids[5:10]

    # descending, also paginated
    desc = [e.id for e in client.beta.sessions.events.list(s.id, order="desc", limit=6)]
    assert desc == list(reversed(ids))
    asc = [e.id for e in client.beta.sessions.events.list(s.id, order="asc", limit=1000)]
    assert asc == ids

    # type filter, one or several types, with pagination
    msgs = [e for e in client.beta.sessions.events.list(s.id, types=["agent.message"], limit=3)]
    assert [e.id for e in msgs] == [e["id"] for e in full if e["type"] == "agent.message"]
    assert [m.content[0].text for m in msgs] == [f"echo: turn {i}" for i in range(4)]
    two = [e.id for e in client.beta.sessions.events.list(s.id, types=["user.message", "session.status_idle"])]
    assert two == [e["id"] for e in full if e["type"] in ("user.message", "session.status_idle")]
    assert list(client.beta.sessions.events.list(s.id, types=["agent.thinking"])) == []

    # limit bounds
    assert len(client.beta.sessions.events.list(s.id, limit=1000).data) == len(ids)
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.list(s.id, limit=1001)
    assert "limit" in ei.value.message
    with pytest.raises(anthropic.BadRequestError):
        client.beta.sessions.events.list(s.id, page="garbage")


def test_list_created_at_bounds(client):
    s = new_session(client)
    full = run_turns(client, s.id, 3)
    # the first event of the second turn
    pivot = full[len(TURN)]
    t = pivot["processed_at"]

    def ids_for(**kw):
        return [e["id"] for e in list_raw_events(client, s.id, **kw)]

    def expect(pred):
        return [e["id"] for e in full if pred(e["processed_at"])]

    # processed_at strings are fixed-width RFC 3339 in UTC, so text order is time order
    assert ids_for(created_at_gte=t) == expect(lambda p: p >= t)
    assert ids_for(created_at_gt=t) == expect(lambda p: p > t)
    assert ids_for(created_at_lt=t) == expect(lambda p: p < t)
    assert ids_for(created_at_lte=t) == expect(lambda p: p <= t)
    assert pivot["id"] in ids_for(created_at_gte=t) and pivot["id"] not in ids_for(created_at_lt=t)
    last_t = full[-1]["processed_at"]
    both = ids_for(created_at_gte=t, created_at_lte=last_t, order="desc")
    assert both == list(reversed(expect(lambda p: t <= p <= last_t)))
    assert ids_for(created_at_gt=last_t) == []
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.list(s.id, created_at_gte="yesterday")
    assert "created_at[gte]" in ei.value.message


# ----------------------------------------------------------------------------- stream


def test_stream_sync_sees_a_whole_turn(client):
    s = new_session(client)
    stream = client.beta.sessions.events.stream(s.id)
    send_text(client, s.id, "hello stream")
    items = collect_stream(stream, nth_idle(1))
    assert types_of(items) == TURN
    assert items[3].content[0].text == "echo: hello stream"
    listed = list_raw_events(client, s.id)
    assert [i.id for i in items] == [e["id"] for e in listed]


@pytest.mark.asyncio
async def test_stream_async_sees_a_whole_turn(aclient):
    a = await aclient.beta.agents.create(name="x", model="scripted/echo")
    env = await aclient.beta.environments.create(name="e")
    s = await aclient.beta.sessions.create(agent=a.id, environment_id=env.id)
    stream = await aclient.beta.sessions.events.stream(s.id)
    await aclient.beta.sessions.events.send(s.id, events=[user_message("async hello")])
    items = await acollect_stream(stream, nth_idle(1))
    assert types_of(items) == TURN
    assert items[3].content[0].text == "echo: async hello"
    listed = [e.id async for e in aclient.beta.sessions.events.list(s.id)]
    assert [i.id for i in items] == listed


def test_stream_only_sends_events_after_connecting(client):
    s = new_session(client)
    run_turns(client, s.id, 1)
    stream = client.beta.sessions.events.stream(s.id)
    send_text(client, s.id, "second")
    items = collect_stream(stream, nth_idle(1))
    assert types_of(items) == TURN
    assert items[0].content[0].text == "second"


def test_stream_of_unknown_session_is_404(client):
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.events.stream("sesn_nope")
    s = new_session(client)
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.stream(s.id, event_deltas=["agent.tool_use"])  # type: ignore[list-item]
    assert "event_deltas" in ei.value.message


def test_stream_ends_when_the_session_is_deleted(client):
    s = new_session(client)
    stream = client.beta.sessions.events.stream(s.id)
    seen = []
    done = threading.Event()

    def reader():
        try:
            for ev in stream:
                seen.append(ev.type)
                if ev.type == "session.deleted":
                    break
        except Exception as e:  # a closed connection is an acceptable end too
            seen.append(f"error: {type(e).__name__}")
        done.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    client.beta.sessions.delete(s.id)
    ended = done.wait(3)
    stream.close()
    assert ended, "the stream of a deleted session stayed open"


def test_raw_sse_frames_name_the_event_and_carry_its_id(server, client):
    """Each SSE frame: `event:` is the event type, `id:` the event id, `data:` the event JSON,
    which validates strictly against the SDK's stream union. Previews carry no `id:` (a client
    must never resume from one) and their `event:` is event_start / event_delta."""
    s = new_session(client)
    adapter = pydantic.TypeAdapter(BetaManagedAgentsStreamSessionEvents)
    frames = []
    ready = threading.Event()

    def reader():
        headers = {"x-api-key": server.key, "anthropic-beta": "managed-agents-2026-04-01",
                   "anthropic-version": "2023-06-01"}
        url = f"{server.url}/v1/sessions/{s.id}/events/stream?event_deltas[]=agent.message"
        with httpx2.Client(timeout=10) as h:
            with h.stream("GET", url, headers=headers) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                ready.set()
                frame = {}
                for line in r.iter_lines():
                    if line == "":
                        if "data" in frame:
                            frames.append(frame)
                            kinds = {f.get("event") for f in frames}
                            # wait until both the final events and the previews have arrived
                            if {"session.status_idle", "event_start", "event_delta"} <= kinds:
                                return
                        frame = {}
                    elif line.startswith(":"):
                        continue
                    else:
                        k, _, v = line.partition(":")
                        v = v[1:] if v.startswith(" ") else v
                        frame[k] = frame.get(k, "") + ("\n" if k in frame else "") + v

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    assert ready.wait(5)
    send_text(client, s.id, "raw")
    t.join(10)
    assert not t.is_alive(), "the raw stream never delivered session.status_idle"
    logged = [f for f in frames if f["event"] not in ("event_start", "event_delta")]
    previews = [f for f in frames if f["event"] in ("event_start", "event_delta")]
    assert [f["event"] for f in logged] == TURN
    assert [f["event"] for f in previews][:1] == ["event_start"]
    assert "event_delta" in [f["event"] for f in previews]
    for f in frames:
        data = json.loads(f["data"])
        assert f["event"] == data["type"]
        if f in previews:
            assert "id" not in f, "a preview frame carries an SSE id"
        else:
            assert f["id"] == data["id"]
        obj = adapter.validate_python(data)
        assert not _unknown_fields(obj), (data["type"], _unknown_fields(obj))
    final = json.loads(logged[3]["data"])
    assert json.loads(previews[0]["data"])["event"] == {"id": final["id"], "type": "agent.message"}


def test_stream_resume_with_last_event_id_loses_nothing(client, scripts_dir):
    # a model slow enough that the first connection closes mid-turn
    model = write_script(scripts_dir, "resume", "delay_ms: 200\nturns:\n  - text: one\n  - text: two\n")
    s = new_session(client, model=model)
    stream = client.beta.sessions.events.stream(s.id)
    send_text(client, s.id, "first")
    got = collect_stream(stream, lambda item, items: len(items) >= 3)  # closed mid-turn
    assert types_of(got) == TURN[:3]
    # while disconnected: the turn finishes, and another one happens
    wait_idle(client, s.id)
    send_text(client, s.id, "second")
    wait_idle(client, s.id, count=2)

    resumed = client.beta.sessions.events.stream(s.id, extra_headers={"Last-Event-ID": got[-1].id})
    rest = collect_stream(resumed, nth_idle(2))
    ids = [e.id for e in got + rest]
    listed = [e["id"] for e in list_raw_events(client, s.id)]
    assert len(ids) == len(set(ids)), "duplicates across the reconnect"
    assert ids == listed, "events missing or out of order across the reconnect"


def test_stream_then_list_history_dedup_by_id(client, scripts_dir):
    """The SDK helpers' pattern: attach the stream first, then read history, de-dup by id."""
    model = write_script(scripts_dir, "dedup", "turns:\n  - text: one\n  - text: two\n    delay_ms: 150\n")
    s = new_session(client, model=model)
    run_turns(client, s.id, 1)  # some history before attaching

    stream = client.beta.sessions.events.stream(s.id)
    send_text(client, s.id, "second")
    history = list_raw_events(client, s.id)  # overlaps with what the stream will deliver
    live = collect_stream(stream, nth_idle(1))
    live_ids = [e.id for e in live]
    assert len(live_ids) == len(set(live_ids))

    merged = []
    seen = set()
    for eid in [e["id"] for e in history] + live_ids:
        if eid not in seen:
            seen.add(eid)
            merged.append(eid)
    final = [e["id"] for e in list_raw_events(client, s.id)]
    assert merged == final
    # the overlap really happened: the history already held the second user.message
    assert live_ids[0] in {e["id"] for e in history}


def test_stream_resume_from_every_position(client):
    """Last-Event-ID = any id replays exactly the events after it."""
    s = new_session(client)
    full = run_turns(client, s.id, 2)
    ids = [e["id"] for e in full]
    for k in (0, 3, len(ids) - 2):
        stream = client.beta.sessions.events.stream(s.id, extra_headers={"Last-Event-ID": ids[k]})
        want = ids[k + 1:]
        got = collect_stream(stream, lambda item, items: len(items) >= len(want))
        assert [g.id for g in got] == want


# ----------------------------------------------------------------------------- previews


def test_event_deltas_preview_the_final_message(server, client, fake_upstream):
    s = new_session(client, model="claude-sonnet-4-6")
    fake_upstream.enqueue(fa.message(fa.text("The quick brown fox jumps", pieces=5),
                                     fa.text(" over the lazy dog", pieces=3), chunk_delay=0.02))
    plain = client.beta.sessions.events.stream(s.id)
    stream = client.beta.sessions.events.stream(s.id, event_deltas=["agent.message"])
    send_text(client, s.id, "tell me")
    items = collect_stream(stream, nth_idle(1))
    plain_items = collect_stream(plain, nth_idle(1))

    finals = [i for i in items if i.type == "agent.message"]
    assert len(finals) == 1
    final = finals[0]
    assert [b.text for b in final.content] == ["The quick brown fox jumps", " over the lazy dog"]

    starts = [i for i in items if i.type == "event_start"]
    deltas = [i for i in items if i.type == "event_delta"]
    assert len(starts) == 1
    assert starts[0].event.type == "agent.message"
    assert starts[0].event.id == final.id
    assert deltas and all(d.event_id == final.id for d in deltas)
    by_index = {}
    for d in deltas:
        assert d.delta.type == "content_delta"
        by_index.setdefault(d.delta.index or 0, []).append(d.delta.content.text)
    assert ["".join(by_index[k]) for k in sorted(by_index)] == [b.text for b in final.content]
    assert "".join(d.delta.content.text for d in deltas) == "".join(b.text for b in final.content)
    # previews come before the event they preview
    pos = {id(i): n for n, i in enumerate(items)}
    assert pos[id(starts[0])] < pos[id(final)]
    assert max(pos[id(d)] for d in deltas) < pos[id(final)]
    # previews have no place in the log, and only the asking connection gets them
    assert "event_start" not in types_of(plain_items) and "event_delta" not in types_of(plain_items)
    assert [i.id for i in plain_items] == [e["id"] for e in list_raw_events(client, s.id)]


def test_event_deltas_arrive_before_their_event_even_in_a_burst(client, scripts_dir):
    text = "abcdefghij" * 5
    model = write_script(scripts_dir, "burst", "chunk_chars: 2\nturns:\n" + f"  - text: {text}\n" * 3)
    s = new_session(client, model=model)
    late = []
    for turn in range(3):
        stream = client.beta.sessions.events.stream(s.id, event_deltas=["agent.message"])
        send_text(client, s.id, f"turn {turn}")
        # read until the idle and every delta of the turn (25 of them) arrived, whatever the order
        items = collect_stream(stream, lambda item, items: nth_idle(1)(item, items)
                               and sum(1 for i in items if i.type == "event_delta") >= 25)
        final = next(i for i in items if i.type == "agent.message")
        after = [i.type for i in items[items.index(final):] if i.type in ("event_start", "event_delta")]
        if after:
            late.append((turn, len(after)))
        assert "".join(i.delta.content.text for i in items if i.type == "event_delta") == text
        # ...and never before the events logged ahead of their model request
        start = next(i for i in items if i.type == "event_start")
        logged_before = [i.type for i in items[:items.index(start)] if i.type not in ("event_start", "event_delta")]
        assert logged_before[-1] == "span.model_request_start", logged_before
    assert not late, f"previews after their final event (turn, count): {late}"


def test_previews_of_the_next_reply_never_overtake_a_tool_result(client, scripts_dir):
    """A preview follows the log position its request started at: the next reply's deltas
    come after the tool result that preceded the request, even when both are ready at once."""
    model = write_script(scripts_dir, "tool_then_text", """
chunk_chars: 2
turns:
  - tool_use: {name: bash, input: {command: "echo hi"}}
  - text: "the command printed hi, as expected"
""")
    a = client.beta.agents.create(name="t", model=model, tools=[{"type": "agent_toolset_20260401"}])
    s = client.beta.sessions.create(agent=a.id, environment_id=client.beta.environments.create(name="e").id)
    stream = client.beta.sessions.events.stream(s.id, event_deltas=["agent.message"])
    send_text(client, s.id, "run it")
    items = collect_stream(stream, nth_idle(1), timeout=20)
    kinds = [i.type for i in items]
    result = kinds.index("agent.tool_result")
    first_preview = kinds.index("event_start")
    assert result < first_preview, kinds
    assert kinds.index("agent.message") > max(i for i, k in enumerate(kinds) if k == "event_delta"), kinds


def test_event_deltas_for_thinking_are_start_only(client, fake_upstream):
    s = new_session(client, model="claude-sonnet-4-6")
    fake_upstream.enqueue(fa.message(fa.thinking("pondering deeply", pieces=4), fa.text("answer", pieces=2),
                                     chunk_delay=0.01))
    stream = client.beta.sessions.events.stream(s.id, event_deltas=["agent.thinking"])
    send_text(client, s.id, "think")
    items = collect_stream(stream, nth_idle(1))
    thinking = [i for i in items if i.type == "agent.thinking"]
    assert len(thinking) == 1
    starts = [i for i in items if i.type == "event_start"]
    assert [st.event.type for st in starts] == ["agent.thinking"]
    assert starts[0].event.id == thinking[0].id
    assert not [i for i in items if i.type == "event_delta"], "agent.message deltas were not asked for"


def test_an_unknown_last_event_id_is_refused_not_silently_skipped(client, server):
    s = new_session(client)
    r = raw_request(server, "GET", f"/v1/sessions/{s.id}/events/stream", headers={"Last-Event-ID": "sevt_not_here"})
    assert r.status_code == 400
    assert "Last-Event-ID" in r.json()["error"]["message"]


def test_a_graceful_shutdown_ends_open_streams_instead_of_waiting_on_them(server):
    """SIGTERM with event streams open: the streams end (their clients reconnect elsewhere
    with Last-Event-ID) and the process exits cleanly, rather than waiting on streams that
    never end by themselves until something kills it."""
    client = server.client(timeout=30)
    sids = [new_session(client).id for _ in range(3)]
    ended = []

    def follow(sid):
        with client.beta.sessions.events.stream(sid) as s:
            for _ in s:
                pass
        ended.append(sid)

    readers = [threading.Thread(target=follow, args=(sid,), daemon=True) for sid in sids]
    for r in readers:
        r.start()
    send_text(client, sids[0], "hello")
    wait_idle(client, sids[0])
    assert server.stop(timeout=8) == 0, "agentd did not exit on SIGTERM with streams open"
    for r in readers:
        r.join(5)
    assert sorted(ended) == sorted(sids)
