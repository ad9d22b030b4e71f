"""Changing the reaction set in any order loses nothing: ingest rolled out first with a new
type gets its votes counted by an aggregator still configured with the old list, and each
reader shows the types it is configured with."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from deploy.local.client import MintedTokens, VoteClient
from deploy.local.kafka import KafkaBroker
from shared.reactions import DEFAULT_TYPES
from tests.aggregator.view import counts, settled
from tests.support import ServiceFactory, eventually, read_topic

OLD = ",".join(DEFAULT_TYPES)
NEW = f"{OLD},clap"


async def test_a_new_type_from_ingest_is_counted_by_an_aggregator_on_the_old_list(
    start_service: ServiceFactory,
    tokens: MintedTokens,
    redis: Redis,
    kafka: KafkaBroker,
    topic: str,
) -> None:
    ingest = start_service("ingest", env={"REACTIONS_TYPES": NEW})
    start_service("aggregator", env={"REACTIONS_TYPES": OLD})
    new_reader = start_service("reader", env={"REACTIONS_TYPES": NEW})
    old_reader = start_service("reader", env={"REACTIONS_TYPES": OLD})

    async with VoteClient(ingest.url, tokens=tokens) as votes:
        for user, reaction in (("a.u1", "clap"), ("a.u2", "clap"), ("a.u3", "love")):
            response = await votes.set("story-1", user, reaction)
            assert response.status_code == 202, response.text
    await settled(redis, kafka.bootstrap, topic)

    assert await counts(redis, "story-1") == {"clap": 2, "love": 1}
    assert await read_topic(kafka.bootstrap, f"{topic}.dlq") == [], "nothing dead-lettered"

    async def tally(reader_url: str) -> dict[str, Any]:
        async with VoteClient(reader_url=reader_url, tokens=tokens) as reads:
            response = await reads.tally("story-1")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

    # The reader configured with the new type shows its counts at once.
    fresh = await eventually(
        lambda: tally(new_reader.url), lambda b: b["total"] == 3, what="the new reader's tally"
    )
    assert fresh["counts"] == {**dict.fromkeys(DEFAULT_TYPES, 0), "love": 1, "clap": 2}
    # The reader still on the old list shows the old types only, and its total is theirs.
    old = await tally(old_reader.url)
    assert old["counts"] == {**dict.fromkeys(DEFAULT_TYPES, 0), "love": 1}
    assert old["total"] == 1
    async with VoteClient(reader_url=old_reader.url, tokens=tokens) as reads:
        mine = (await reads.mine(["story-1"], "a.u1")).json()
    assert mine["articles"]["story-1"]["mine"] is None, "a type it does not show is not 'mine'"
