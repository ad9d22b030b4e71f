"""The baselines do the work they stand for: same per-event Redis work, valid wrk traffic."""

from __future__ import annotations

from importlib import resources

from redis.asyncio import Redis

from bench.wrk import run_wrk
from services.aggregator.scripts import apply_event_line, apply_keys, apply_script
from shared.tallies import counts_key, readers_key
from tests.conftest import ServiceFactory

VOTES = [("u1", "love"), ("u2", "like"), ("u1", "wow"), ("u3", "love"), ("u2", "love")]


async def test_per_event_lua_moves_votes_like_the_apply_script(redis: Redis) -> None:
    apply = apply_script(redis)
    lines = "".join(
        apply_event_line(offset, user, reaction, None)
        for offset, (user, reaction) in enumerate(VOTES)
    )
    await apply(keys=list(apply_keys("real")), args=[0, lines, "", "1:test"])

    source = resources.files("bench").joinpath("baselines/per_event.lua").read_text()
    per_event = redis.register_script(source)
    for user, reaction in VOTES:
        await per_event(keys=[counts_key("lua"), readers_key("lua")], args=[user, reaction])

    real = await redis.hgetall(counts_key("real"))
    lua = await redis.hgetall(counts_key("lua"))
    real.pop("@fence")
    lua.pop("@fence", None)
    assert {k: int(v) for k, v in lua.items() if int(v)} == {
        k: int(v) for k, v in real.items() if int(v)
    }
    assert await redis.hgetall(readers_key("lua")) == await redis.hgetall(readers_key("real"))


def test_put_script_sends_only_requests_ingest_accepts(start_service: ServiceFactory) -> None:
    ingest = start_service("ingest")
    result = run_wrk(
        ingest.url, "put", ["50", "1000", "wrk-a"], duration_s=1, connections=2, timeout_s=10
    )
    assert result.requests > 0
    assert result.non2xx == 0
