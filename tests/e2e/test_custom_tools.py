"""Custom tools end to end: agent.custom_tool_use -> idle requires_action naming the event ->
user.custom_tool_result -> the model sees a tool_result -> end_turn. Driven by hand, and by the
SDK's own session tool runner (`client.beta.sessions.events.tool_runner`)."""

import asyncio

import anthropic
import pytest

import fake_anthropic as fa
from conftest import list_raw_events, make_env, send_text, user_message, wait_events, wait_idle

CLAUDE = "claude-sonnet-4-6"
WEATHER = {
    "type": "custom",
    "name": "get_weather",
    "description": "Get the weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME = {
    "type": "custom",
    "name": "get_time",
    "description": "Get the local time of a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def session_with_tools(client, tools):
    a = client.beta.agents.create(name="tooler", model=CLAUDE, system="Use tools.", tools=tools)
    return client.beta.sessions.create(agent=a.id, environment_id=make_env(client).id)


def idle_with(evs, reason):
    return bool(evs) and evs[-1]["type"] == "session.status_idle" and evs[-1]["stop_reason"]["type"] == reason


def test_custom_tool_round_trip(client, fake_upstream):
    s = session_with_tools(client, [WEATHER])
    fake_upstream.enqueue(
        fa.message(fa.text("Let me check."), fa.tool_use("get_weather", {"city": "Paris"}, id="toolu_up_1")),
        fa.reply_text("It is sunny in Paris."),
    )
    send_text(client, s.id, "Weather in Paris?")
    evs = wait_events(client, s.id, lambda e: idle_with(e, "requires_action"), what="requires_action")
    use = [e for e in evs if e["type"] == "agent.custom_tool_use"]
    assert len(use) == 1 and use[0]["name"] == "get_weather" and use[0]["input"] == {"city": "Paris"}
    assert evs[-1]["stop_reason"]["event_ids"] == [use[0]["id"]]
    assert client.beta.sessions.retrieve(s.id).status == "idle"

    # the first request declared the tool (with a cache breakpoint on the last tool)
    r1 = fake_upstream.messages_requests()[0]
    assert [t["name"] for t in r1.body["tools"]] == ["get_weather"]
    assert r1.body["tools"][0]["input_schema"] == WEATHER["input_schema"]
    assert r1.body["tools"][0]["description"] == WEATHER["description"]

    client.beta.sessions.events.send(s.id, events=[{
        "type": "user.custom_tool_result", "custom_tool_use_id": use[0]["id"],
        "content": [{"type": "text", "text": "sunny, 21C"}]}])
    evs = wait_idle(client, s.id, count=2)
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}
    assert [e["content"][0]["text"] for e in evs if e["type"] == "agent.message"][-1] == "It is sunny in Paris."

    reqs = fake_upstream.messages_requests()
    assert len(reqs) == 2
    r2 = reqs[1]
    # the assistant turn is replayed with its tool_use, then the user turn carries the result
    tool_uses = r2.blocks("tool_use")
    assert len(tool_uses) == 1
    assert tool_uses[0]["name"] == "get_weather" and tool_uses[0]["input"] == {"city": "Paris"}
    results = r2.blocks("tool_result")
    assert len(results) == 1
    assert results[0]["tool_use_id"] == tool_uses[0]["id"]
    assert [c["text"] for c in results[0]["content"]] == ["sunny, 21C"]
    assert results[0].get("is_error", False) is False
    roles = [m["role"] for m in r2.messages]
    assert roles == ["user", "assistant", "user"]


def test_parallel_tool_calls_wait_for_every_result(client, fake_upstream):
    s = session_with_tools(client, [WEATHER, TIME])
    fake_upstream.enqueue(
        fa.message(fa.tool_use("get_weather", {"city": "Oslo"}), fa.tool_use("get_time", {"city": "Oslo"})),
        fa.reply_text("Cold and late."),
    )
    send_text(client, s.id, "Oslo?")
    evs = wait_events(client, s.id, lambda e: idle_with(e, "requires_action"))
    uses = [e for e in evs if e["type"] == "agent.custom_tool_use"]
    assert [u["name"] for u in uses] == ["get_weather", "get_time"]
    assert evs[-1]["stop_reason"]["event_ids"] == [u["id"] for u in uses]

    # answer the second one first: still waiting, now only for the first
    client.beta.sessions.events.send(s.id, events=[{
        "type": "user.custom_tool_result", "custom_tool_use_id": uses[1]["id"],
        "content": [{"type": "text", "text": "23:10"}]}])
    evs = wait_events(client, s.id, lambda e: sum(1 for x in e if x["type"] == "session.status_idle") == 2
                      and e[-1]["type"] == "session.status_idle")
    assert evs[-1]["stop_reason"] == {"type": "requires_action", "event_ids": [uses[0]["id"]]}
    assert len(fake_upstream.messages_requests()) == 1, "the model was called before every result was in"

    client.beta.sessions.events.send(s.id, events=[{
        "type": "user.custom_tool_result", "custom_tool_use_id": uses[0]["id"], "is_error": True,
        "content": [{"type": "text", "text": "weather service down"}]}])
    evs = wait_idle(client, s.id, count=3)
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}
    r2 = fake_upstream.messages_requests()[1]
    results = {r["tool_use_id"]: r for r in r2.blocks("tool_result")}
    assert set(results) == {u["id"] for u in uses}
    by_text = {r["content"][0]["text"]: r for r in r2.blocks("tool_result")}
    assert by_text["weather service down"]["is_error"] is True
    assert by_text["23:10"].get("is_error", False) is False


def test_a_new_message_instead_of_a_result_closes_the_call(client, fake_upstream):
    s = session_with_tools(client, [WEATHER])
    fake_upstream.enqueue(fa.message(fa.tool_use("get_weather", {"city": "Rome"})), fa.reply_text("never mind"))
    send_text(client, s.id, "Rome?")
    wait_events(client, s.id, lambda e: idle_with(e, "requires_action"))
    send_text(client, s.id, "forget it")
    evs = wait_events(client, s.id, lambda e: idle_with(e, "end_turn"))
    r2 = fake_upstream.messages_requests()[1]
    results = r2.blocks("tool_result")
    assert len(results) == 1 and results[0]["is_error"] is True
    # Messages API order: the tool_result answers the tool_use before the new text
    last_user = r2.messages[-1]
    assert last_user["role"] == "user"
    assert [b["type"] for b in last_user["content"]] == ["tool_result", "text"]
    assert evs[-1]["stop_reason"] == {"type": "end_turn"}


def test_a_second_result_for_the_same_call_is_refused(client, fake_upstream):
    s = session_with_tools(client, [WEATHER])
    fake_upstream.enqueue(fa.message(fa.tool_use("get_weather", {"city": "Kyiv"})), fa.reply_text("thanks"))
    send_text(client, s.id, "Kyiv?")
    evs = wait_events(client, s.id, lambda e: idle_with(e, "requires_action"))
    use_id = [e for e in evs if e["type"] == "agent.custom_tool_use"][0]["id"]
    result = {"type": "user.custom_tool_result", "custom_tool_use_id": use_id,
              "content": [{"type": "text", "text": "snow"}]}
    client.beta.sessions.events.send(s.id, events=[result])
    wait_events(client, s.id, lambda e: idle_with(e, "end_turn"))
    # a client retrying a POST whose response it lost must not log the answer twice
    with pytest.raises(anthropic.APIStatusError) as ei:
        client.beta.sessions.events.send(s.id, events=[result])
    assert ei.value.status_code in (400, 409)
    assert ei.value.body["type"] == "error"
    evs = list_raw_events(client, s.id)
    assert sum(1 for e in evs if e["type"] == "user.custom_tool_result") == 1
    assert len(fake_upstream.messages_requests()) == 2


def test_a_result_for_an_unknown_call_is_refused(client, fake_upstream):
    s = session_with_tools(client, [WEATHER])
    send_text(client, s.id, "hi")
    evs = wait_idle(client, s.id)
    msg_id = [e for e in evs if e["type"] == "agent.message"][0]["id"]
    with pytest.raises(anthropic.BadRequestError) as ei:
        client.beta.sessions.events.send(s.id, events=[{
            "type": "user.custom_tool_result", "custom_tool_use_id": msg_id, "content": []}])
    assert "custom_tool_use_id" in ei.value.message


# ----------------------------------------------------------------------------- the SDK's tool runner


@pytest.mark.asyncio
@pytest.mark.parametrize("runner_first", [False, True], ids=["message-first", "runner-first"])
async def test_sdk_session_tool_runner_drives_custom_tools(server, fake_upstream, runner_first):
    ac = server.async_client()
    calls = []

    @anthropic.beta_async_tool
    async def get_weather(city: str) -> str:
        """Get the weather for a city.

        Args:
            city: The city.
        """
        calls.append(city)
        return f"sunny in {city}"

    fake_upstream.enqueue(
        fa.message(fa.tool_use("get_weather", {"city": "Lisbon"})),
        fa.message(fa.tool_use("get_weather", {"city": "Porto"})),
        fa.reply_text("Both sunny."),
    )
    try:
        a = await ac.beta.agents.create(name="runner", model=CLAUDE, tools=[WEATHER])
        env = await ac.beta.environments.create(name="e")
        s = await ac.beta.sessions.create(agent=a.id, environment_id=env.id)
        runner = ac.beta.sessions.events.tool_runner(s.id, tools=[get_weather], max_idle=0.5)

        async def drive():
            return [c async for c in runner]

        if runner_first:
            task = asyncio.ensure_future(drive())
            await asyncio.sleep(0.2)
            await ac.beta.sessions.events.send(s.id, events=[user_message("Lisbon then Porto")])
        else:
            await ac.beta.sessions.events.send(s.id, events=[user_message("Lisbon then Porto")])
            task = asyncio.ensure_future(drive())
        dispatched = await asyncio.wait_for(task, timeout=20)
        assert calls == ["Lisbon", "Porto"]
        assert [d.name for d in dispatched] == ["get_weather", "get_weather"]
        assert all(d.posted and not d.is_error for d in dispatched)

        evs = [e async for e in ac.beta.sessions.events.list(s.id)]
        assert evs[-1].type == "session.status_idle" and evs[-1].stop_reason.type == "end_turn"
        results = [e for e in evs if e.type == "user.custom_tool_result"]
        assert [r.custom_tool_use_id for r in results] == [d.tool_use_id for d in dispatched]
        assert [r.content[0].text for r in results] == ["sunny in Lisbon", "sunny in Porto"]
        reqs = fake_upstream.messages_requests()
        assert len(reqs) == 3
        assert [b["content"][0]["text"] for b in reqs[2].blocks("tool_result")] == ["sunny in Lisbon",
                                                                                    "sunny in Porto"]
    finally:
        await ac.close()
