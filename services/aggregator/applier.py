"""A batch's way into Redis: decode → group by article → one fenced Lua call per article →
positions, trending, notify. The Kafka commit that ends it is the member's (`consumer.py`).

`BatchApplier` is the hot path, shared by the live consumer-group member and the `rebuild`
command. Order inside one batch, and why:

1. decode every record and group the events by article (`decode.py`); undecodable ones go
   to the dead-letter topic (acknowledged before the position moves past them, so none is
   lost);
2. one non-transactional pipeline with one fenced Lua call per article chunk (`calls.py`:
   at most MAX_EVENTS_PER_CALL events, of one minute for trending) — the fence
   makes a replay or a zombie consumer harmless, and each call checks its slot's apply mark
   (`marks.py`), so a refused chunk stops the article's next ones and a Redis that went back
   in time refuses them all; a retry sends the calls that did not apply;
3. corrective records for stale events, acknowledged by Kafka before the position moves;
4. one more pipeline: resume positions (only now, so they never run ahead of the applies,
   and only if the Redis epoch marker is unchanged, so never onto an emptied Redis; they
   end the replay of the partitions they take past their targets, `recovery.py`),
   trending deltas (in the minutes the votes were cast) and one PUBLISH of the changed
   article ids;
5. the Kafka commit (for lag tooling; Redis positions decide where to resume).

Every Redis and Kafka step goes through the one retry policy (`retry.py`). The live loop
overlaps batches: N+1 is fetched and decoded while N is in Redis, and N's steps 4-5 run
while N+1's events are applied (see `Aggregator.run`).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import orjson
from aiokafka import TopicPartition
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError

from services.aggregator import metrics
from services.aggregator.calls import ApplyCall, apply_calls, fold_replies
from services.aggregator.deadletter import DEFAULT_MAX_RECORD_BYTES, DeadLetters
from services.aggregator.decode import Batch, DecodedBatch, Decoder
from services.aggregator.marks import ApplyMarks, Chain
from services.aggregator.produce import append_correctives
from services.aggregator.retry import (
    APPLY,
    CORRECTIVE,
    FINISH,
    SCRIPT_LOAD,
    BatchContext,
    RetryPolicy,
)
from services.aggregator.scripts import (
    ScriptCall,
    apply_script,
    epoch_script,
    evalsha_command,
    evalsha_many,
    positions_script,
    run_pipelined,
    send_applies,
    trend_calls,
    trend_script,
)
from shared.events import DEFAULT_CLIENT_CLOCK_SKEW_MS
from shared.logs import get_logger
from shared.tallies import (
    CHANGES_CHANNEL,
    TREND_BUCKET_SECONDS,
    TREND_ROLLUPS_SINCE_KEY,
    counts_key,
    epoch_key,
    position_key,
    readers_key,
    replay_key,
)

log = get_logger(__name__)


class RedisLostData(Exception):
    """The Redis epoch marker vanished or changed under a running aggregator: Redis was
    wiped or replaced (restarted without its AOF, flushed, failed over to an empty node).
    Every assigned partition must be replayed; the batch in hand is dropped."""


@dataclass(frozen=True, slots=True)
class ApplyMode:
    """What applying a batch writes besides the counts, the fences and the positions."""

    dead_letters: bool  # invalid records to the dead-letter topic
    correctives: bool  # corrective records to the topic after stale events
    trending: bool  # the batch's net deltas to the trending buckets of the minutes cast
    notifications: bool  # one PUBLISH of the articles whose tallies (counts or seq) changed

    @property
    def produces(self) -> bool:
        """True when the mode writes to Kafka, so the applier needs a producer."""
        return self.dead_letters or self.correctives


# The consumer-group member: everything.
LIVE: Final = ApplyMode(dead_letters=True, correctives=True, trending=True, notifications=True)
# `rebuild` replays a log whose dead letters and correctives were written live, and whose
# history is not news: counts, fences and positions only.
REBUILD: Final = ApplyMode(
    dead_letters=False, correctives=False, trending=False, notifications=False
)


@dataclass
class BatchReport:
    """What one applied batch did; positions are the next offsets to read per partition."""

    positions: dict[TopicPartition, int]
    context: BatchContext
    outcomes: dict[str, int] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    correctives: int = 0
    # For the finishing step: every article applied to, and the trending deltas by minute.
    articles: list[str] = field(default_factory=list)
    trends: dict[int, dict[str, list[str | int]]] = field(default_factory=dict)


class BatchApplier:
    """Applies batches of records to the Redis view; used by the live loop and by `rebuild`."""

    def __init__(
        self,
        redis: Redis,
        producer: Any,  # None when the mode produces nothing
        *,
        topic: str,
        dlq_topic: str,
        partitions: int,
        retry: RetryPolicy,
        mode: ApplyMode,
        clock_skew_ms: int = DEFAULT_CLIENT_CLOCK_SKEW_MS,
        dlq_max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        if mode.produces and producer is None:
            raise ValueError("dead letters and correctives need a Kafka producer")
        self.redis = redis
        # The Redis epoch marker seen by `check_epoch`, which the live aggregator calls at
        # start: from then on positions are written only under that epoch. (`rebuild` does
        # not call it: it starts from nothing anyway.)
        self.epoch: bytes | str | None = None
        # Where each partition's log ends now (those holding records), for the replay
        # targets `check_epoch` records with a new epoch; None: no targets (tests, rebuild).
        self.topic_ends: Callable[[], Awaitable[dict[int, int]]] | None = None
        self.producer = producer
        self.topic = topic
        self.dead_letters = DeadLetters(
            producer, dlq_topic, retry, max_record_bytes=dlq_max_record_bytes
        )
        self.retry = retry
        self.mode = mode
        self.decoder = Decoder(partitions, clock_skew_ms)
        self.marks = ApplyMarks(redis)
        self._apply_script = apply_script(redis)
        self._trend = trend_script(redis)
        self._positions = positions_script(redis)
        self._epoch = epoch_script(redis)

    async def load_scripts(self) -> None:
        """Load the Lua scripts so the pipelines can call them by SHA."""
        context = BatchContext(self.topic)
        for script in (self._apply_script, self._trend, self._positions):
            load = partial(self.redis.script_load, script.script)
            await self.retry.run(load, SCRIPT_LOAD, context)

    async def check_epoch(self) -> None:
        """Raise RedisLostData when the Redis epoch marker is not the one seen before.

        The marker is created once per Redis data set; a wiped Redis has none (the first
        member to notice creates a new one, and every member sees a change). It is created
        with the replay targets: each partition holding records is being rebuilt until the
        positions reach where its log ends now, and readers answer 503 for the view until
        then, rather than counts that are only part of the log.
        """
        key = epoch_key(self.topic)
        current = await self.redis.get(key)
        if current is None:
            ends = await self.topic_ends() if self.topic_ends else {}
            targets = [item for pair in sorted(ends.items()) for item in pair]
            keys = [key, replay_key(self.topic)]
            current = await self._epoch(keys=keys, args=[uuid.uuid4().hex, *targets])
        seen, self.epoch = self.epoch, current
        if seen is not None and current != seen:
            raise RedisLostData(f"epoch {seen!r} became {current!r}")

    def decode(self, batch: Batch, into: DecodedBatch | None = None) -> DecodedBatch:
        """Step 1: group the batch's events by article; `into` is extended when given."""
        return self.decoder.decode(batch, into)

    async def apply(self, batch: Batch) -> BatchReport:
        """Decode and apply one batch (each partition's records in offset order)."""
        return await self.apply_decoded(self.decode(batch))

    async def apply_decoded(self, decoded: DecodedBatch) -> BatchReport:
        """Apply a decoded batch and record its positions."""
        report = await self.apply_events(decoded)
        await self.finish(report, self.epoch)
        return report

    async def apply_events(self, decoded: DecodedBatch) -> BatchReport:
        """Steps 1-3 of a batch: dead letters, the fenced applies, correctives."""
        started = time.perf_counter()
        context = decoded.context(self.topic)
        report = BatchReport(decoded.positions, context, articles=list(decoded.by_article))
        by_article, dead = decoded.by_article, decoded.dead
        if dead and self.mode.dead_letters:
            await self.dead_letters.send(dead)  # each letter through the retry policy
        calls = apply_calls(by_article, by_minute=self.mode.trending)
        pending = [call for article in calls for call in article]
        await self.retry.run(lambda: self._apply(pending), APPLY, context)
        correctives = fold_replies(report, by_article, calls)
        report.outcomes["dead_lettered"] = len(dead)
        if correctives and self.mode.correctives:
            append = partial(append_correctives, self.producer, self.topic, correctives)
            await self.retry.run(append, CORRECTIVE, context)
            report.correctives = len(correctives)

        applied_at = time.time()
        for article in by_article.values():
            metrics.END_TO_END_SECONDS.observe(max(0.0, applied_at - article.oldest_ts / 1000))
        for outcome, n in report.outcomes.items():
            if n:
                metrics.EVENTS.labels(outcome).inc(n)
        if report.correctives:
            metrics.CORRECTIVES.inc(report.correctives)
        metrics.BATCH_SIZE.observe(decoded.size)
        metrics.APPLY_SECONDS.observe(time.perf_counter() - started)
        return report

    async def finish(self, report: BatchReport, epoch: bytes | str | None) -> None:
        """Step 4 of a batch: positions (under `epoch`, when given), trending, notification."""
        await self.retry.run(lambda: self._finish(report, epoch), FINISH, report.context)

    async def forget(self, articles: list[str]) -> None:
        """Delete articles applied to a Redis that lost its data: the replay rebuilds them.

        Their fences would otherwise hide every earlier event from that replay. Only the
        member owning an article's partition writes its keys, so nothing else is lost.
        """
        keys = [key for a in articles for key in (counts_key(a), readers_key(a))]
        for start in range(0, len(keys), 1000):
            await self.redis.delete(*keys[start : start + 1000])

    async def forget_positions(self, partitions: list[int]) -> None:
        """Delete the stored positions of `partitions`: they are resumed from the start."""
        if partitions:
            await self.redis.delete(*(position_key(self.topic, p) for p in partitions))

    async def _apply(self, calls: list[ApplyCall]) -> None:
        """One round trip with every call that has not applied yet, in order; each checks
        the apply mark of its slot and partition (`marks.py`)."""
        pending = [call for call in calls if call.reply is None]
        chains = [call.chain for call in pending]
        await self.marks.prepare(chains)
        # A writer id per round trip: a later call of it can only follow the call before it
        # in this same round trip, never a stray one of an earlier round trip.
        writer = f"{random.getrandbits(32):08x}"
        expected, leaves = self.marks.expectations(chains, writer)
        args = [
            (call.keys, (call.partition, call.payload, before, after))
            for call, before, after in zip(pending, expected, leaves, strict=True)
        ]
        outcomes = await self._send_applies(args, chains)
        replies, error = self.marks.record(chains, outcomes, writer)
        for call, reply in zip(pending, replies, strict=True):
            call.reply = reply
        if isinstance(error, NoScriptError):
            await self.redis.script_load(self._apply_script.script)  # Redis restarted empty
        if error is not None:
            raise error

    async def _send_applies(
        self, calls: Sequence[ScriptCall], chains: Sequence[Chain]
    ) -> list[Any]:
        """The round trip itself (`send_applies`); tests replace it to make Redis refuse or
        lose a call."""
        return await send_applies(self.redis, self._apply_script.sha, calls, chains)

    async def _finish(self, report: BatchReport, epoch: bytes | str | None) -> None:
        """Positions first (the applies are done), then trending, then one notification.

        Under an epoch, the positions are written by a script that first checks the epoch
        marker, in the same step: if Redis lost its data since the batch was fetched, its
        applies may have landed on the emptied Redis. Then its articles are forgotten,
        RedisLostData makes the member replay its partitions, and the batch's trending
        deltas, which the replay writes again, are not written: the positions' answer comes
        before them.
        """
        trends: list[ScriptCall] = []
        since: tuple[str, str, int, str] | None = None
        if self.mode.trending and report.trends:
            now = int(time.time()) // TREND_BUCKET_SECONDS
            for minute, deltas in sorted(report.trends.items()):
                # A vote stamped ahead of this clock (another host's) counts now.
                trends += trend_calls(deltas, min(minute, now), now)
            # The rollups are whole from the first minute an aggregator wrote them.
            since = ("SET", TREND_ROLLUPS_SINCE_KEY, now, "NX")
        notify = (
            orjson.dumps(report.changed) if self.mode.notifications and report.changed else None
        )
        command = self._positions_command(report.positions, epoch)
        try:
            if isinstance(self.redis, RedisCluster):
                # Its pipelines refuse scripts: the same steps, one after another.
                written = await self.redis.execute_command(*command)
                if written:
                    await evalsha_many(self.redis, self._trend.sha, trends)
                    if since:
                        await self.redis.execute_command(*since)
                    if notify:
                        await self.redis.publish(CHANGES_CHANNEL, notify)
            else:
                (written,) = await run_pipelined(self.redis, [command])
                commands = [evalsha_command(self._trend.sha, k, a) for k, a in trends]
                if since:
                    commands.append(since)
                if notify:
                    commands.append(("PUBLISH", CHANGES_CHANNEL, notify))
                if written and commands:
                    await run_pipelined(self.redis, commands)
        except NoScriptError:
            await self.redis.script_load(self._positions.script)
            await self.redis.script_load(self._trend.script)
            raise
        if not written:
            await self.forget(report.articles)
            await self.check_epoch()
            raise RedisLostData(f"the epoch marker is no longer {epoch!r}")

    def _positions_command(
        self, positions: dict[TopicPartition, int], epoch: bytes | str | None
    ) -> tuple[str | int | bytes, ...]:
        """MSET of the positions or, under an epoch, the script that checks it first."""
        keys = [position_key(tp.topic, tp.partition) for tp in positions]
        if epoch is None:
            pairs = zip(keys, positions.values(), strict=True)
            return ("MSET", *(item for pair in pairs for item in pair))
        partitions = [tp.partition for tp in positions]
        args = (epoch, *positions.values(), *partitions)
        return evalsha_command(
            self._positions.sha, (epoch_key(self.topic), replay_key(self.topic), *keys), args
        )
