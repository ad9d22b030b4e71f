"""The oracle every fault test ends with: a plain-Python model of the DESIGN's counting
rules over a full read of the topic, compared with Redis and with the outcomes the traffic
(tests/faults/traffic.py) recorded.

The oracle checks three things against the real stack:
(a) Redis (counts, readers and fences of every article) equals the model applied to every
    record of the topic in partition order;
(b) every `202` a client received appears in the topic exactly once, by `event_id`, and
    carries what the client sent;
(c) no request answered with a non-2xx status was applied: a record that no `202` explains
    must be explained by a request whose outcome is unknown (timeout, connection error), or
    be a corrective restatement that the model found to be what it must be, a no-op when
    reached (DESIGN guarantee 4), or a clear of `erase-reader`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.events import InvalidEvent, ReactionEvent, decode_event, record_key
from tests.aggregator.model import fold_log
from tests.faults.harness import ArticleView, read_view, stored_articles
from tests.faults.traffic import Outcome, Signature
from tests.support import TopicRecord, end_offsets, read_topic


@dataclass
class ModelResult:
    """The model's view of the topic, plus what it learnt along the way."""

    articles: dict[str, ArticleView]
    events: dict[str, list[TopicRecord]]  # event_id -> records carrying it
    decoded: dict[tuple[int, int], ReactionEvent]
    invalid: list[tuple[TopicRecord, str]]  # (record, reason)
    noop_offsets: set[tuple[int, int]]  # records that changed no count
    unchanged_offsets: set[tuple[int, int]]  # records that changed nothing at all
    stale_offsets: set[tuple[int, int]]  # records ignored as older than the applied one
    restated: set[tuple[str, str]]  # (article, reader) a stale event asked to restate
    # Corrective records that were no no-op when the model reached them: (partition,
    # offset) -> why.
    wrong_correctives: dict[tuple[int, int], str]


def _encode_reader(reaction: str, client_ts: int | None) -> str:
    # The readers hash's value: "reaction" | "reaction|client_ts" | "|client_ts".
    return reaction if client_ts is None else f"{reaction}|{client_ts}"


def model(records: Iterable[TopicRecord], *, partitions: int | None = None) -> ModelResult:
    """The aggregator's counting rules (tests/aggregator/model.py) folded over the topic.

    Malformed records are skipped (they belong in the dead-letter topic); given the
    partition count, so is a valid event on another partition than its article's.
    """
    records = list(records)
    fold = fold_log(records, partitions=partitions)
    articles = {
        article_id: ArticleView(
            counts=dict(state.counts),
            readers={u: _encode_reader(r, ts) for u, (r, ts) in state.readers.items()},
            fence=None if state.fence is None else f"{state.fence[0]}:{state.fence[1]}",
        )
        for article_id, state in fold.articles.items()
    }
    events: dict[str, list[TopicRecord]] = defaultdict(list)
    for record in records:
        if (record.partition, record.offset) in fold.decoded:
            events[fold.decoded[(record.partition, record.offset)].event_id].append(record)
    return ModelResult(
        articles,
        dict(events),
        fold.decoded,
        [(cast(TopicRecord, record), reason) for record, reason in fold.dead],
        {w for w, outcome in fold.outcomes.items() if outcome != "applied"},
        fold.unchanged,
        {w for w, outcome in fold.outcomes.items() if outcome == "stale"},
        {(article, user) for article, user, _, _ in fold.correctives},
        fold.wrong_correctives,
    )


def _origin(record: TopicRecord) -> str | None:
    return next((v.decode() for k, v in record.headers if k == "origin"), None)


@dataclass
class OracleReport:
    """What the oracle saw: useful for a test's extra assertions and for failure messages."""

    records: list[TopicRecord]
    model: ModelResult
    accepted: int
    rejected: int
    indeterminate: int
    indeterminate_applied: int
    restatements: int


async def wait_caught_up(
    redis: Redis,
    bootstrap: str,
    topic: str,
    *,
    timeout: float = 90.0,  # noqa: ASYNC109 - a deadline for polling
) -> tuple[list[TopicRecord], ModelResult]:
    """Wait until every article's fence in Redis is its last record in the topic.

    The topic is read again until its end offsets stop moving, because the aggregator may
    append corrective records while it catches up.
    """
    deadline = time.monotonic() + timeout
    while True:
        records = await read_topic(bootstrap, topic)
        partitions = len(await end_offsets(bootstrap, topic))
        expected = model(records, partitions=partitions)
        want = {a: v.fence for a, v in expected.articles.items()}
        last: dict[str, str | None] = {}
        moved = False
        while not moved:
            try:
                got = await read_view(redis, want)
                last = {a: v.fence for a, v in got.items()}
                if last == want:
                    break
            except (RedisError, OSError) as exc:
                last = {"<redis error>": repr(exc)}
            if time.monotonic() > deadline:
                behind = {a: (last.get(a), f) for a, f in want.items() if last.get(a) != f}
                raise AssertionError(
                    f"the aggregator did not catch up within {timeout}s: "
                    f"{len(behind)} of {len(want)} articles behind, (redis fence, topic last) "
                    f"for some: {dict(list(behind.items())[:8])}"
                )
            await asyncio.sleep(0.2)  # poll interval; the deadline above decides
            # Redis may be waiting for nothing more: the records it is at may have been
            # appended (correctives) after the read; then read the topic again.
            ends = await end_offsets(bootstrap, topic)
            moved = ends != _ends_of(records, ends)
        if moved:
            continue
        ends = await end_offsets(bootstrap, topic)
        if ends == _ends_of(records, ends):
            return records, expected


def _ends_of(records: list[TopicRecord], like: Mapping[int, int]) -> dict[int, int]:
    ends = dict.fromkeys(like, 0)
    for r in records:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    return ends


async def assert_oracle(
    redis: Redis,
    bootstrap: str,
    topic: str,
    outcomes: Iterable[Outcome],
    *,
    direct_event_ids: Iterable[str] = (),
    timeout: float = 90.0,  # noqa: ASYNC109 - a deadline for the catch-up
) -> OracleReport:
    """The oracle every fault test ends with; see the module docstring."""
    records, expected = await wait_caught_up(redis, bootstrap, topic, timeout=timeout)
    outcomes = list(outcomes)
    accepted = [o for o in outcomes if o.accepted]
    problems = await _view_problems(redis, expected)
    problems += _accepted_problems(expected, accepted)
    explained = {o.event_id for o in accepted} | set(direct_event_ids)
    unexplained = _unexplained_records(expected, explained, outcomes)
    problems += unexplained.problems
    rejected = [o for o in outcomes if o.rejected]
    indeterminate = sum(1 for o in outcomes if o.indeterminate)
    summary = (
        f"{len(accepted)} accepted, {len(rejected)} rejected "
        f"({Counter(o.status for o in rejected)}), {indeterminate} indeterminate"
    )
    assert not problems, f"oracle: {len(problems)} problems; {summary}:\n" + "\n".join(
        problems[:40]
    )
    return OracleReport(
        records=records,
        model=expected,
        accepted=len(accepted),
        rejected=len(rejected),
        indeterminate=indeterminate,
        indeterminate_applied=unexplained.indeterminate_applied,
        restatements=unexplained.restatements,
    )


async def _view_problems(redis: Redis, expected: ModelResult) -> list[str]:
    """(a) Redis equals the model, article by article, and holds no article the log lacks."""
    problems = []
    actual = await read_view(redis, expected.articles)
    for article_id, want in expected.articles.items():
        got = actual[article_id]
        if got.counts != want.counts:
            problems.append(f"{article_id}: counts {got.counts} != model {want.counts}")
        if got.readers != want.readers:
            diff = {
                u: (got.readers.get(u), want.readers.get(u))
                for u in set(got.readers) | set(want.readers)
                if got.readers.get(u) != want.readers.get(u)
            }
            problems.append(f"{article_id}: readers differ (redis, model): {diff}")
    extra = await stored_articles(redis) - set(expected.articles)
    if extra:
        problems.append(f"Redis has articles the topic never mentions: {sorted(extra)[:10]}")
    return problems


def _accepted_problems(expected: ModelResult, accepted: list[Outcome]) -> list[str]:
    """(b) Every 202 is in the topic exactly once, carrying what the client asked for."""
    problems = []
    for o in accepted:
        assert o.event_id is not None
        found = expected.events.get(o.event_id, [])
        if len(found) != 1:
            problems.append(f"202 event {o.event_id} ({o.signature()}) is {len(found)}x in topic")
            continue
        event = expected.decoded[(found[0].partition, found[0].offset)]
        got_sig = (event.article_id, event.user_id, event.op, event.reaction, event.client_ts)
        if got_sig != o.signature():
            problems.append(f"202 event {o.event_id}: topic has {got_sig}, sent {o.signature()}")
        if found[0].key != record_key(o.article_id, o.user_id):
            problems.append(f"202 event {o.event_id}: key {found[0].key!r}")
    return problems


@dataclass
class _Unexplained:
    """What (c) found among the records no 202 explains."""

    problems: list[str] = field(default_factory=list)
    indeterminate_applied: int = 0
    restatements: int = 0


def _unexplained_records(
    expected: ModelResult, explained: set[str | None], outcomes: list[Outcome]
) -> _Unexplained:
    """(c) Records no 202 explains: an unknown outcome, or a record the aggregator or an
    operator command appended (its `origin` header says which) and that is what such a
    record must be, never a request that was told it failed."""
    found = _Unexplained()
    unknown: dict[Signature, int] = Counter(o.signature() for o in outcomes if o.indeterminate)
    rejected = {o.signature() for o in outcomes if o.rejected}
    for event_id, records in expected.events.items():
        if event_id in explained:
            continue
        for record in records:
            where = (record.partition, record.offset)
            event = expected.decoded[where]
            sig = (event.article_id, event.user_id, event.op, event.reaction, event.client_ts)
            origin = _origin(record)
            if origin == "corrective" and where in expected.wrong_correctives:
                # Redis applied it as the model did, so (a) cannot see it: a corrective that
                # restated the wrong reaction would change both alike.
                why = expected.wrong_correctives[where]
                found.problems.append(f"corrective {record.partition}:{record.offset} {sig}: {why}")
            elif origin == "corrective" or (origin == "erase-reader" and event.op == "clear"):
                found.restatements += 1
            elif unknown.get(sig, 0) > 0:
                unknown[sig] -= 1
                found.indeterminate_applied += 1
            else:
                why = (
                    f"origin {origin}, not the record the model expects from it"
                    if origin
                    else "a rejected request asked for it"
                    if sig in rejected
                    else "no request did"
                )
                found.problems.append(
                    f"record {record.partition}:{record.offset} {sig} has no 202 ({why})"
                )
    return found


async def assert_consistent_prefix(
    redis: Redis, records: list[TopicRecord], partitions: int
) -> int:
    """Each article in Redis equals the model applied to its records up to its fence.

    A batch is applied whole per article or not at all, so this holds at any moment however
    far behind the aggregator is, even while Redis refuses writes. Returns how many articles
    are behind the topic's end.
    """
    actual = await read_view(redis, await stored_articles(redis), atomic=False)
    stored = {a: _parse_fence(v.fence) for a, v in actual.items() if v.fence}
    cut = [
        r
        for r in records
        if (article := _article_of(r)) is not None
        and article in stored
        and r.partition == stored[article][0]
        and r.offset <= stored[article][1]
    ]
    expected = model(cut, partitions=partitions)
    problems = []
    for article_id, got in actual.items():
        want = expected.articles.get(article_id, ArticleView())
        if (got.counts, got.readers, got.fence) != (want.counts, want.readers, want.fence):
            problems.append(f"{article_id}: redis {got} != prefix model {want}")
    assert not problems, "partial writes:\n" + "\n".join(problems[:20])
    full = model(records, partitions=partitions).articles
    return sum(1 for a, v in full.items() if actual.get(a, ArticleView()).fence != v.fence)


def _parse_fence(fence: str) -> tuple[int, int]:
    p, o = fence.split(":")
    return int(p), int(o)


def _article_of(record: TopicRecord) -> str | None:
    try:
        return decode_event(record.value).article_id
    except InvalidEvent:
        return None
