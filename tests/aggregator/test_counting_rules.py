"""The counting rules of the apply script, on a real Redis, against a plain-Python model.

Hypothesis draws a log of events over a few articles, readers and partitions, then a
delivery plan that replays applied ranges, splits articles into chunks and appends the
corrective records the script asks for, as the aggregator does. Every call's report and
the final state must match the model; once quiet, a rebuild from any compaction of the
log (each key keeps a suffix of its records, as Kafka's cleaner leaves it) must give
the live counts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from importlib import resources

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis

from deploy.local.redis import RedisServer
from services.aggregator.scripts import (
    ApplyReply,
    apply_event_line,
    apply_keys,
    mark_text,
    parse_apply_reply,
)
from shared.tallies import FENCE_FIELD, article_slot, counts_key, readers_key
from tests.aggregator.model import ArticleModel, Event

ARTICLES = ("a0", "a1", "a2", "a3")
USERS = ("u0", "u1", "u2")
REACTIONS = ("like", "love", "wow")
PARTITIONS = 2

# (article, op, user, reaction, client_ts)
Record = tuple[str, str, str, str, int | None]

records = st.tuples(
    st.sampled_from(ARTICLES),
    st.sampled_from(["s", "s", "c"]),
    st.sampled_from(USERS),
    st.sampled_from(REACTIONS),
    st.one_of(st.none(), st.integers(1, 12)),
)
steps = st.tuples(
    st.integers(0, PARTITIONS - 1),  # partition
    st.integers(0, 6),  # how far back the delivery starts (a replay of applied offsets)
    st.integers(1, 8),  # records delivered
    st.integers(1, 4),  # events per apply call
)


def partition_of(article: str) -> int:
    return ARTICLES.index(article) % PARTITIONS


@pytest.fixture(scope="module")
def sync_redis(redis_server: RedisServer) -> Iterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


class Harness:
    """Drives the real script and the model side by side over per-partition logs."""

    def __init__(self, redis: Redis, log: list[Record]) -> None:
        self.redis = redis
        source = resources.files("shared").joinpath("lua/apply_batch.lua").read_text()
        self.script = redis.register_script(source)
        self.logs: dict[int, list[Record]] = defaultdict(list)
        for record in log:
            self.logs[partition_of(record[0])].append(record)
        self.position = dict.fromkeys(range(PARTITIONS), 0)
        self.models: dict[str, ArticleModel] = defaultdict(ArticleModel)
        self.correctives = 0
        # The apply mark of each (slot, partition): every call names the one it expects.
        self.marks: dict[tuple[int, int], int] = defaultdict(int)

    def deliver(
        self, partition: int, start: int, end: int, chunk: int, *, append: bool = True
    ) -> None:
        """Apply log[start:end] of one partition, grouped by article, `chunk` events per call."""
        log = self.logs[partition]
        by_article: dict[str, list[Event]] = defaultdict(list)
        for offset in range(start, end):
            article, op, user, reaction, ts = log[offset]
            by_article[article].append((offset, op, user, reaction, ts))
        for article, events in by_article.items():
            for i in range(0, len(events), chunk):
                part = events[i : i + chunk]
                got = parse_apply_reply(self.call(article, partition, part))
                assert isinstance(got, ApplyReply), got
                want = self.models[article].apply(partition, part)
                assert (got.applied, got.noop, got.duplicate, got.stale) == (
                    want.applied,
                    want.noop,
                    want.duplicate,
                    want.stale,
                )
                assert got.deltas == want.deltas
                assert got.correctives == want.correctives
                if append:
                    # The aggregator appends correctives to the topic after the batch.
                    for user, reaction, ts in want.correctives:
                        op = "s" if reaction else "c"
                        log.append((article, op, user, reaction or REACTIONS[0], ts))
                        self.correctives += 1
        self.position[partition] = max(self.position[partition], end)

    def call(self, article: str, partition: int, events: list[Event]) -> str:
        payload = "".join(
            apply_event_line(offset, user, reaction if op == "s" else None, ts)
            for offset, op, user, reaction, ts in events
        )
        mark = (article_slot(article), partition)
        count = self.marks[mark]
        reply: str = self.script(
            keys=list(apply_keys(article)),
            args=[partition, payload, mark_text(count, "harness"), f"{count + 1}:harness"],
        )
        self.marks[mark] += 1
        return reply

    def drain(self) -> None:
        """Deliver everything left, correctives included, until the log stops growing."""
        for _ in range(50):
            pending = [p for p in range(PARTITIONS) if self.position[p] < len(self.logs[p])]
            if not pending:
                return
            for p in pending:
                self.deliver(p, self.position[p], len(self.logs[p]), 3)
        raise AssertionError("correctives did not converge")

    def redis_counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for article in ARTICLES:
            raw = self.redis.hgetall(counts_key(article))
            raw.pop(FENCE_FIELD, None)
            out[article] = {r: int(n) for r, n in raw.items()}
        return out

    def redis_readers(self, article: str) -> dict[str, tuple[str, int | None]]:
        out: dict[str, tuple[str, int | None]] = {}
        for user, value in self.redis.hgetall(readers_key(article)).items():
            reaction, _, ts = value.partition("|")
            out[user] = (reaction, int(ts) if ts else None)
        return out


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(log=st.lists(records, max_size=40), plan=st.lists(steps, max_size=25), data=st.data())
def test_counting_rules_match_the_model_and_a_rebuild(
    sync_redis: Redis, log: list[Record], plan: list[tuple[int, int, int, int]], data: st.DataObject
) -> None:
    sync_redis.flushdb()
    harness = Harness(sync_redis, log)
    for partition, back, length, chunk in plan:
        position = harness.position[partition]
        start = max(0, position - back)
        end = min(len(harness.logs[partition]), position + length)
        harness.deliver(partition, start, max(start, end), chunk)
    harness.drain()

    live = harness.redis_counts()
    for article in ARTICLES:
        model = harness.models[article]
        assert live[article] == dict(model.counts)
        readers = harness.redis_readers(article)
        assert readers == model.readers
        # Counts are never negative and always equal the readers' current reactions.
        assert all(n > 0 for n in live[article].values())
        assert dict(Counter(r for r, _ in readers.values() if r)) == live[article]

    # Independent of the model: a reader's last event without client_ts (an operator
    # action, or a client that sends none) is final, whatever correctives were in flight;
    # where every event of a reader carries a distinct client_ts, the newest one wins.
    keys: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in log:
        keys[(record[0], record[2])].append(record)
    for (article, user), history in keys.items():
        got = harness.redis_readers(article).get(user, ("", None))[0]
        stamps = [ts for *_, ts in history]
        if stamps[-1] is None:
            _, op, _, reaction, _ = history[-1]
        elif None not in stamps and len(set(stamps)) == len(stamps):
            _, op, _, reaction, _ = max(history, key=lambda r: r[4] or 0)
        else:
            continue
        assert got == (reaction if op == "s" else "")

    # Rebuild from a compaction of the final log: per key, any suffix of its records
    # (at least the last) survives, in log order; replayed into an empty view.
    sync_redis.flushdb()
    rebuilt = Harness(sync_redis, [])
    for partition in range(PARTITIONS):
        full = harness.logs[partition]
        positions: dict[tuple[str, str], list[int]] = defaultdict(list)
        for offset, record in enumerate(full):
            positions[(record[0], record[2])].append(offset)
        keep: set[int] = set()
        for key in sorted(positions):
            offsets = positions[key]
            cut = data.draw(st.integers(0, len(offsets) - 1), label=f"cut {partition} {key}")
            keep.update(offsets[cut:])
        # Offsets are kept as they were: compaction leaves gaps, never renumbers.
        rebuilt.logs[partition] = list(full)
        kept = sorted(keep)
        by_article: dict[str, list[Event]] = defaultdict(list)
        for offset in kept:
            article, op, user, reaction, ts = full[offset]
            by_article[article].append((offset, op, user, reaction, ts))
        for article, events in by_article.items():
            rebuilt.call(article, partition, events)
            rebuilt.models[article].apply(partition, events)
    assert rebuilt.redis_counts() == live
    for article in ARTICLES:
        assert dict(rebuilt.models[article].counts) == live[article]
        # The reactions (not necessarily the stored client_ts of operator clears) match.
        assert {u: r for u, (r, _) in rebuilt.redis_readers(article).items() if r} == {
            u: r for u, (r, _) in harness.models[article].readers.items() if r
        }
