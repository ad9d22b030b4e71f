"""Trending counts a vote in the minute it was cast, whenever the aggregator applies it.

A backlog drained after an outage, or the replay after Redis lost its data, would otherwise
land in the minute it is applied, and a day of history would read as "trending now". On a
real Redis, through the applier: Hypothesis draws a log whose votes were cast in the last
few minutes or before the longest window (in any order, as several ingest hosts stamp them),
cut into batches and apply calls of any size; every trending bucket (minutes and rollups)
must hold, per reaction and `all`, the net change of the votes cast in its minutes.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from unittest import mock

from aiokafka import TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from services.aggregator import calls as calls_module
from services.aggregator.applier import ApplyMode
from shared.events import ReactionEvent, partition_for
from shared.tallies import (
    TREND_BUCKET_SECONDS,
    TREND_HORIZON_MINUTES,
    TREND_ROLLUPS_SINCE_KEY,
    TREND_SPANS,
    TREND_TTL_SECONDS,
    trend_bucket_key,
    trend_key,
    trend_keys,
)
from tests.aggregator.view import PARTITIONS, counts, new_applier, records

TOPIC = "trend-minutes-test"
# Three articles of one partition, so one log orders all their votes.
ARTICLES = tuple(a for a in (f"story-{i}" for i in range(40)) if partition_for(a, PARTITIONS) == 0)[
    :3
]
PARTITION = 0
USERS = ("u0", "u1", "u2")
REACTIONS = ("like", "love", "wow")
OLD = -(TREND_HORIZON_MINUTES + 60)  # cast before the 24 h window began
# Live, with no Kafka producer: these logs need no dead letter or corrective.
TRENDING = ApplyMode(dead_letters=False, correctives=False, trending=True, notifications=False)

drawn_votes = st.lists(
    st.tuples(
        st.sampled_from(ARTICLES),
        st.sampled_from(["set", "set", "clear"]),
        st.sampled_from(USERS),
        st.sampled_from(REACTIONS),
        st.sampled_from([0, -1, -2, -3, OLD]),  # minutes before now it was cast
    ),
    min_size=1,
    max_size=40,
)


def model(votes: list[ReactionEvent]) -> Counter[tuple[str, str, int]]:
    """(reaction or `all`, article, minute cast) -> net change, for votes in the window."""
    current: dict[tuple[str, str], str] = {}
    horizon = int(time.time()) // TREND_BUCKET_SECONDS - TREND_HORIZON_MINUTES
    net: Counter[tuple[str, str, int]] = Counter()
    for vote in votes:
        key = (vote.article_id, vote.user_id)
        before, after = current.get(key), vote.reaction
        if before == after:
            continue
        if after is None:
            del current[key]
        else:
            current[key] = after
        minute = vote.ts // (TREND_BUCKET_SECONDS * 1000)
        if minute < horizon:
            continue
        if before:
            net[(before, vote.article_id, minute)] -= 1
        if after:
            net[(after, vote.article_id, minute)] += 1
        net[("all", vote.article_id, minute)] += (after is not None) - (before is not None)
    return net


async def buckets(redis: Redis) -> dict[str, dict[str, float]]:
    """Every trending bucket in Redis: key -> article -> net delta (zeros left out)."""
    found = {}
    async for key in redis.scan_iter("rx:trend:*"):
        if key != TREND_ROLLUPS_SINCE_KEY:
            found[key] = {a: s for a, s in await redis.zrange(key, 0, -1, withscores=True) if s}
    return {k: v for k, v in found.items() if v}


@settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    drawn=drawn_votes,
    cuts=st.lists(st.integers(1, 40), max_size=6),
    per_call=st.integers(1, 4),
)
async def test_each_vote_counts_in_the_minute_it_was_cast(
    redis: Redis, drawn: list[tuple[str, str, str, str, int]], cuts: list[int], per_call: int
) -> None:
    await redis.flushall()
    now = int(time.time()) // TREND_BUCKET_SECONDS
    votes = [
        replace(
            ReactionEvent.new(op, article, user, reaction),  # type: ignore[arg-type]
            ts=((now + ago) * TREND_BUCKET_SECONDS + 30) * 1000,
        )
        for article, op, user, reaction, ago in drawn
    ]
    log = records(TOPIC, votes, PARTITION)
    applier = new_applier(redis, TOPIC, TRENDING)
    await applier.load_scripts()
    tp = TopicPartition(TOPIC, PARTITION)
    with mock.patch.object(calls_module, "MAX_EVENTS_PER_CALL", per_call):
        start = 0
        for end in [*sorted({c for c in cuts if c < len(log)}), len(log)]:
            await applier.apply({tp: log[start:end]})
            start = end

    want: dict[str, dict[str, float]] = {}
    for (reaction, article, minute), n in model(votes).items():
        for span in TREND_SPANS:
            bucket = want.setdefault(trend_bucket_key(reaction, span, minute // span), {})
            bucket[article] = bucket.get(article, 0) + n
    want = {k: {a: n for a, n in v.items() if n} for k, v in want.items()}
    assert await buckets(redis) == {k: v for k, v in want.items() if v}
    # The counts are the log's, whichever minutes trending put the votes in.
    final: dict[str, Counter[str]] = {a: Counter() for a in ARTICLES}
    for (article, _), reaction in _current(votes).items():
        final[article][reaction] += 1
    for article in ARTICLES:
        assert await counts(redis, article) == dict(final[article])


def _current(votes: list[ReactionEvent]) -> dict[tuple[str, str], str]:
    held: dict[tuple[str, str], str] = {}
    for vote in votes:
        if vote.reaction is None:
            held.pop((vote.article_id, vote.user_id), None)
        else:
            held[(vote.article_id, vote.user_id)] = vote.reaction
    return held


async def test_a_late_vote_is_kept_as_long_as_its_minute_is_in_a_window(redis: Redis) -> None:
    """A bucket of three hours ago lives 25 h from its minute, not from when it was written;
    a vote stamped ahead of the aggregator's clock counts in the current minute."""
    article = ARTICLES[0]
    now = int(time.time()) // TREND_BUCKET_SECONDS
    ago = now - 180
    votes = [
        replace(ReactionEvent.new("set", article, "u0", "love"), ts=(ago * 60 + 30) * 1000),
        replace(ReactionEvent.new("set", article, "u1", "wow"), ts=((now + 10) * 60) * 1000),
    ]
    applier = new_applier(redis, TOPIC, TRENDING)
    await applier.load_scripts()
    await applier.apply({TopicPartition(TOPIC, PARTITION): records(TOPIC, votes, PARTITION)})
    after = int(time.time()) // TREND_BUCKET_SECONDS

    for key in trend_keys("love", ago):
        assert await redis.zscore(key, article) == 1
        expected = TREND_TTL_SECONDS - 180 * 60
        assert expected - 2 * TREND_BUCKET_SECONDS < await redis.ttl(key) <= expected
    counted = [m for m in range(now, after + 1) if await redis.zscore(trend_key("wow", m), article)]
    assert len(counted) == 1, "the vote from ahead, in the minute it was applied"
    assert not await redis.exists(trend_key("wow", now + 10))
