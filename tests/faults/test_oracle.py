"""The oracle's own tests: the model follows the DESIGN rules (and the real apply script),
and the oracle fails when Redis or the topic disagree with what clients were told."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from deploy.local.redis import RedisServer
from services.aggregator.scripts import apply_event_line, apply_keys, apply_script, parse_mark
from shared.events import ReactionEvent, partition_for
from shared.tallies import counts_key
from tests.faults.harness import produce_raw, read_view
from tests.faults.oracle import assert_oracle, model
from tests.faults.rig import PARTITIONS, Rig
from tests.faults.traffic import Outcome, wait_for_outcomes
from tests.support import TopicRecord


def _records(*events: ReactionEvent, partition: int = 0) -> list[TopicRecord]:
    return [TopicRecord(partition, offset, e.key(), e.encode()) for offset, e in enumerate(events)]


def _set(user: str, reaction: str, client_ts: int | None = None) -> ReactionEvent:
    return ReactionEvent.new("set", "a1", user, reaction, client_ts)


def _clear(user: str, client_ts: int | None = None) -> ReactionEvent:
    return ReactionEvent.new("clear", "a1", user, None, client_ts)


def test_model_keeps_one_reaction_per_reader() -> None:
    result = model(
        _records(
            _set("u1", "love"),
            _set("u2", "love"),
            _set("u1", "love"),  # same again: nothing changes
            _set("u1", "angry"),  # moves the vote
            _clear("u2"),
            _clear("u3"),  # clearing nothing: nothing changes
        )
    )
    view = result.articles["a1"]
    assert view.counts == {"angry": 1}
    assert view.readers == {"u1": "angry"}
    assert view.fence == "0:5"
    assert result.unchanged_offsets == {(0, 2), (0, 5)}


def test_model_ignores_stale_client_ts_but_applies_operator_events() -> None:
    result = model(
        _records(
            _set("u1", "love", 200),
            _set("u1", "sad", 100),  # older than the applied one: ignored
            _clear("u1"),  # no client_ts: applies, moves the stored client_ts to 201
            _set("u1", "wow", 200),  # older than 201 now: ignored
            _set("u1", "wow", 201),  # equal is not older: applies
        )
    )
    view = result.articles["a1"]
    assert view.counts == {"wow": 1}
    assert view.readers == {"u1": "wow|201"}
    assert view.fence == "0:4"
    assert result.stale_offsets == {(0, 1), (0, 3)}


def test_model_skips_malformed_records() -> None:
    good = _set("u1", "like")
    records = [
        TopicRecord(0, 0, b"k", b"{not json"),
        TopicRecord(0, 1, good.key(), good.encode()),
        TopicRecord(0, 2, b"k", b'{"v": 2}'),
    ]
    result = model(records)
    assert result.articles["a1"].counts == {"like": 1}
    assert [reason for _, reason in result.invalid] == ["bad_json", "unknown_version"]


CORRECTIVE = (("origin", b"corrective"),)


def _stale_then(corrective: ReactionEvent) -> list[TopicRecord]:
    """u1 sets love at 200, a stale sad at 100 asks to restate, then `corrective` arrives."""
    stale = _records(_set("u1", "love", 200), _set("u1", "sad", 100))
    return [*stale, TopicRecord(0, 2, corrective.key(), corrective.encode(), CORRECTIVE)]


def test_model_checks_each_corrective_is_a_restatement_that_changes_nothing() -> None:
    right = model(_stale_then(_set("u1", "love", 200)))
    assert right.wrong_correctives == {}
    assert (0, 2) in right.unchanged_offsets
    # Restating the wrong reaction: applied by Redis and the model alike, so only the
    # check when the model reaches it can see it.
    wrong = model(_stale_then(_set("u1", "wow", 200)))
    assert wrong.articles["a1"].counts == {"wow": 1}
    assert "changed the reader's state" in wrong.wrong_correctives[(0, 2)]
    # A corrective stale in turn (the reader voted again since) changes nothing: fine.
    moved_on = [
        *_records(_set("u1", "love", 200), _set("u1", "sad", 100), _set("u1", "wow", 300)),
        TopicRecord(0, 3, b"", _set("u1", "love", 200).encode(), CORRECTIVE),
    ]
    assert model(moved_on).wrong_correctives == {}


def test_model_asks_to_restate_after_stale_events_and_dead_letters_strays() -> None:
    stale = _records(_set("u1", "love", 200), _set("u1", "sad", 100))
    corrective = ReactionEvent.new("set", "a1", "u1", "love", 200)
    stray = ReactionEvent.new("set", "a1", "u2", "like")
    home = partition_for("a1", 4)
    records = [
        *(TopicRecord(home, r.offset, r.key, r.value) for r in stale),
        TopicRecord(home, 2, corrective.key(), corrective.encode(), (("origin", b"corrective"),)),
        TopicRecord((home + 1) % 4, 0, stray.key(), stray.encode()),
    ]
    result = model(records, partitions=4)
    assert result.restated == {("a1", "u1")}
    assert (home, 2) in result.unchanged_offsets, "a corrective restates: a no-op"
    assert [reason for _, reason in result.invalid] == ["wrong_partition"]
    assert result.articles["a1"].counts == {"love": 1}
    assert result.articles["a1"].fence == f"{home}:2"


_event = st.builds(
    lambda op, user, reaction, ts: (op, user, reaction, ts),
    st.sampled_from(["s", "s", "c"]),
    st.sampled_from(["u1", "u2", "u3"]),
    st.sampled_from(["like", "love", "sad"]),
    st.one_of(st.none(), st.integers(1, 5)),
)


@pytest.fixture
async def plain_redis(fault_redis: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(fault_redis.url, decode_responses=True)
    yield client
    await client.aclose()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(_event, max_size=25), split=st.integers(0, 25))
async def test_model_matches_the_real_apply_script(
    plain_redis: Redis, events: list[tuple[str, str, str, int | None]], split: int
) -> None:
    article = f"h-{uuid.uuid4().hex[:8]}"
    reaction_events = [
        ReactionEvent.new("set" if op == "s" else "clear", article, user, reaction, ts)
        for op, user, reaction, ts in events
    ]
    apply = apply_script(plain_redis)
    keys = list(apply_keys(article))
    # Two calls, the second overlapping the first: a replay must change nothing.
    for chunk in (range(min(split, len(events))), range(len(events))):
        lines = "".join(
            apply_event_line(
                i,
                reaction_events[i].user_id,
                reaction_events[i].reaction,
                reaction_events[i].client_ts,
            )
            for i in chunk
        )
        mark = await plain_redis.hget(keys[2], "0") or ""
        count, _ = parse_mark(mark)
        await apply(keys=keys, args=[0, lines, mark, f"{count + 1}:test"])
    expected = model(_records(*reaction_events)).articles.get(article)
    actual = (await read_view(plain_redis, [article]))[article]
    if expected is None:
        assert actual.counts == {} and actual.readers == {}
    else:
        assert (actual.counts, actual.readers, actual.fence) == (
            expected.counts,
            expected.readers,
            expected.fence,
        )


async def test_oracle_fails_when_redis_or_topic_disagree_with_clients(rig: Rig) -> None:
    ingest = rig.start("ingest")
    rig.start("aggregator")
    async with rig.traffic(ingest, articles=20, readers=20, workers=2, seed=3) as traffic:
        await wait_for_outcomes(traffic, 100)
        # A stale vote: the aggregator appends a corrective restating love.
        now = int(time.time() * 1000)
        for reaction, client_ts in (("love", now), ("sad", now - 1000)):
            sent = await traffic.send(
                Outcome("set", "oracle-1", "a.o1", reaction, client_ts, time.monotonic())
            )
            assert sent.accepted, sent
    report = await rig.oracle(traffic.outcomes)
    assert report.accepted >= 100 and report.rejected == 0
    assert report.restatements >= 1 and not report.model.wrong_correctives

    accepted = next(o for o in traffic.outcomes if o.accepted)
    # A 202 the topic never got.
    lost = Outcome("set", "a-0", "r0", "like", None, 0.0, status=202, event_id=str(uuid.uuid4()))
    with pytest.raises(AssertionError, match="0x in topic"):
        await assert_oracle(rig.redis, rig.bootstrap, rig.topic, [*traffic.outcomes, lost])
    # A request told it failed whose event is in the topic.
    accepted.status, accepted.event_id = 503, None
    with pytest.raises(AssertionError, match="a rejected request asked for it"):
        await assert_oracle(rig.redis, rig.bootstrap, rig.topic, traffic.outcomes)
    # The same request with an unknown outcome may have been applied.
    accepted.status = None
    await assert_oracle(rig.redis, rig.bootstrap, rig.topic, traffic.outcomes)
    # A count Redis got wrong.
    article = next(a for a, v in report.model.articles.items() if v.counts)
    reaction = next(iter(report.model.articles[article].counts))
    await rig.redis.hincrby(counts_key(article), reaction, 1)
    with pytest.raises(AssertionError, match=f"{article}: counts"):
        await assert_oracle(rig.redis, rig.bootstrap, rig.topic, traffic.outcomes)
    # A corrective restating the wrong reaction: Redis applies it as the model does, and
    # only the check of each corrective against the model's state catches it.
    wrong = ReactionEvent.new("set", "oracle-1", "a.o1", "wow", now)
    home = partition_for("oracle-1", PARTITIONS)
    await produce_raw(
        rig.bootstrap, rig.topic, [(home, wrong.key(), wrong.encode())], headers=list(CORRECTIVE)
    )
    with pytest.raises(AssertionError, match=r"corrective .*changed the reader's state"):
        await assert_oracle(rig.redis, rig.bootstrap, rig.topic, traffic.outcomes)
    assert (await read_view(rig.redis, ["oracle-1"]))["oracle-1"].readers == {"a.o1": f"wow|{now}"}
