"""Operator commands as real processes: `rebuild` reproduces the live view, `erase-reader`
removes one reader everywhere through Kafka."""

from __future__ import annotations

import random

from redis.asyncio import Redis

from deploy.local.kafka import KafkaBroker
from shared.identity import site_reader_id
from shared.tallies import readers_key, replay_key
from tests.aggregator.view import Send, all_counts, counts, run_command, settled
from tests.support import ServiceFactory, eventually, read_topic


async def traffic(send: Send, n: int, seed: int) -> None:
    """Sets, moves and clears over 25 articles, with client_ts out of order now and then."""
    rng = random.Random(seed)
    for i in range(n):
        article, user = f"a{rng.randrange(25)}", f"u{rng.randrange(12)}"
        ts = 10_000 + i - (rng.randrange(50) if rng.random() < 0.2 else 0)
        client_ts = ts if rng.random() < 0.8 else None
        if rng.random() < 0.2:
            await send("clear", article, user, client_ts=client_ts)
        else:
            await send("set", article, user, rng.choice(["like", "love", "wow"]), client_ts)


async def readers_of(redis: Redis, articles: list[str]) -> dict[str, dict[str, str]]:
    out = {}
    for article in articles:
        raw = await redis.hgetall(readers_key(article))
        out[article] = {u: v.split("|")[0] for u, v in raw.items() if v.split("|")[0]}
    return out


async def test_rebuild_reproduces_the_live_counts(
    start_service: ServiceFactory,
    send: Send,
    redis: Redis,
    kafka: KafkaBroker,
    topic: str,
    stack_env: dict[str, str],
) -> None:
    aggregator = start_service("aggregator")
    await traffic(send, 400, seed=1)
    await settled(redis, kafka.bootstrap, topic)

    status, output = await run_command(stack_env, "rebuild")
    assert status == 2 and "active member" in output  # refuses while aggregators run

    live = await all_counts(redis)
    live_readers = await readers_of(redis, sorted(live))
    assert live and any(
        r.headers and dict(r.headers).get("origin") == b"corrective"
        for r in await read_topic(kafka.bootstrap, topic)
    ), "the traffic should have produced stale events and correctives"
    aggregator.stop()
    await redis.hset("rx:{a0}:n", "like", 999)  # damage the view: the rebuild must not keep it

    status, output = await run_command(stack_env, "rebuild")
    assert status == 0, output
    assert await all_counts(redis) == live
    # Readers answered 503 rebuilding while it ran; they serve the view again.
    assert not await redis.exists(replay_key(topic))
    assert await readers_of(redis, sorted(live)) == live_readers

    # The aggregators resume after the rebuild from the positions it wrote.
    start_service("aggregator")
    await send("set", "a-new", "u1", "love")
    await eventually(lambda: counts(redis, "a-new"), lambda c: c == {"love": 1}, what="resumed")
    assert {a: c for a, c in (await all_counts(redis)).items() if a != "a-new"} == live


async def test_erase_reader_clears_them_everywhere_through_kafka(
    start_service: ServiceFactory,
    send: Send,
    redis: Redis,
    kafka: KafkaBroker,
    topic: str,
    stack_env: dict[str, str],
) -> None:
    start_service("aggregator")
    for i in range(6):
        await send("set", f"story-{i}", "eve", "angry", client_ts=5_000)
        await send("set", f"story-{i}", "bob", "angry")
    await send("clear", "story-0", "eve")  # already cleared on one article
    await send("set", "story-9", "evelyn", "love")  # a different reader
    await settled(redis, kafka.bootstrap, topic)

    status, output = await run_command(stack_env, "erase-reader", "eve")
    assert status == 0, output
    assert "on 6 article(s)" in output
    await settled(redis, kafka.bootstrap, topic)
    for i in range(6):
        assert await counts(redis, f"story-{i}") == {"angry": 1}
        assert await redis.hget(readers_key(f"story-{i}"), "bob") == "angry"
    assert await counts(redis, "story-9") == {"love": 1}
    # A delayed click from before the erase cannot bring the reaction back.
    await send("set", "story-1", "eve", "angry", client_ts=4_000)
    await settled(redis, kafka.bootstrap, topic)
    assert await counts(redis, "story-1") == {"angry": 1}

    status, output = await run_command(stack_env, "erase-reader", "not a user")
    assert status == 2 and "is not a user id" in output


async def test_erase_reader_maps_a_site_subject_as_tokens_do(
    start_service: ServiceFactory,
    send: Send,
    redis: Redis,
    kafka: KafkaBroker,
    topic: str,
    stack_env: dict[str, str],
) -> None:
    start_service("aggregator")
    hashed = site_reader_id("alice@news.example")
    assert hashed.startswith("h.")
    for reader in (hashed, "s.alice", "a.alice"):
        await send("set", "site-story", reader, "wow")
    await settled(redis, kafka.bootstrap, topic)

    status, output = await run_command(
        stack_env, "erase-reader", "--site-subject", "alice@news.example"
    )
    assert status == 0, output
    assert f"published clears for {hashed} on 1 article(s)" in output
    status, output = await run_command(stack_env, "erase-reader", "--site-subject", "alice")
    assert status == 0 and "s.alice on 1 article(s)" in output, output
    await settled(redis, kafka.bootstrap, topic)
    assert await counts(redis, "site-story") == {"wow": 1}
    assert await redis.hget(readers_key("site-story"), "a.alice") == "wow"
