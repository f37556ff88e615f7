"""Many sessions at once with the async client: each completes with its own answer, and one
slow upstream request does not hold the others up."""

import asyncio
import time

import pytest

import fake_anthropic as fa
from conftest import user_message

N = 20


async def run_one(ac, agent_id, env_id, text):
    s = await ac.beta.sessions.create(agent=agent_id, environment_id=env_id, title=text)
    stream = await ac.beta.sessions.events.stream(s.id)
    await ac.beta.sessions.events.send(s.id, events=[user_message(text)])
    seen = []
    async def read():
        async for ev in stream:
            seen.append(ev)
            if ev.type == "session.status_idle":
                return
    try:
        await asyncio.wait_for(read(), 15)
    finally:
        await stream.close()
    return s.id, seen, time.monotonic()


@pytest.mark.asyncio
async def test_twenty_sessions_in_parallel(server, fake_upstream):
    # every upstream call takes 0.4 s: twenty of them one after another would take 8 s
    fake_upstream.handler = lambda req: fa.reply_text(
        f"answer to {req.messages[-1]['content'][-1]['text']}", delay=0.4)
    ac = server.async_client()
    try:
        agent = await ac.beta.agents.create(name="par", model="claude-sonnet-4-6")
        env = await ac.beta.environments.create(name="par")
        t0 = time.monotonic()
        results = await asyncio.gather(*(run_one(ac, agent.id, env.id, f"job {i}") for i in range(N)))
        elapsed = time.monotonic() - t0
        assert elapsed < 4.0, f"{N} sessions took {elapsed:.1f}s: they did not run in parallel"
        assert len({sid for sid, _, _ in results}) == N
        for i, (sid, seen, _) in enumerate(results):
            msgs = [e for e in seen if e.type == "agent.message"]
            assert [m.content[0].text for m in msgs] == [f"answer to job {i}"], sid
            assert seen[-1].stop_reason.type == "end_turn"
        assert len(fake_upstream.messages_requests()) == N
        # and the log agrees with every stream
        for sid, seen, _ in results:
            listed = [e.id async for e in ac.beta.sessions.events.list(sid)]
            assert listed == [e.id for e in seen]
        page = await ac.beta.sessions.list(limit=100, statuses=["idle"])
        assert len(page.data) == N
    finally:
        await ac.close()


@pytest.mark.asyncio
async def test_a_slow_upstream_does_not_delay_the_others(server, fake_upstream):
    fake_upstream.handler = lambda req: (
        fa.reply_text("slow done", delay=3.0) if "SLOW-MARKER" in req.text
        else fa.reply_text(f"fast: {req.messages[-1]['content'][-1]['text']}"))
    ac = server.async_client()
    try:
        agent = await ac.beta.agents.create(name="mix", model="claude-sonnet-4-6")
        env = await ac.beta.environments.create(name="mix")
        t0 = time.monotonic()
        slow = asyncio.ensure_future(run_one(ac, agent.id, env.id, "SLOW-MARKER please"))
        # make sure the slow request is in flight upstream before the others start
        deadline = time.monotonic() + 5
        while not any("SLOW-MARKER" in r.text for r in fake_upstream.requests):
            assert time.monotonic() < deadline, "the slow request never reached the upstream"
            await asyncio.sleep(0.01)
        fast = await asyncio.gather(*(run_one(ac, agent.id, env.id, f"quick {i}") for i in range(N - 1)))
        fast_done = max(done for _, _, done in fast) - t0
        assert not slow.done(), "the slow session finished before the fast ones?"
        assert fast_done < 2.5, f"fast sessions took {fast_done:.2f}s with a 3 s request in flight"
        for i, (_, seen, _) in enumerate(fast):
            assert [m.content[0].text for m in seen if m.type == "agent.message"] == [f"fast: quick {i}"]
        sid, seen, slow_done = await asyncio.wait_for(slow, 10)
        assert slow_done - t0 >= 2.9
        assert [m.content[0].text for m in seen if m.type == "agent.message"] == ["slow done"]
    finally:
        await ac.close()
