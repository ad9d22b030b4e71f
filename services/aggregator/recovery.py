"""What the member does when Redis lost data or went back in time: it replays its partitions
from the start, and the fences skip whatever Redis kept.

How it notices, under a running member:
- the epoch marker (`rx:epoch:{topic}`), checked by the positions script: Redis was emptied
  (the tail of a batch raises RedisLostData);
- an apply call refused by its slot's mark (`marks.py`): a slot went back in time under a
  batch (RedisRolledBack);
- the Redis masters changing (`watch.py`): every known mark is then compared with Redis;
- and when the member gives partitions up, their marks are compared once more, so that a
  loss it had no time to notice is replayed by the next owner.

When Redis lost its data (no epoch marker), the member that creates the new marker records
with it where each partition's log ends (`topic_ends`): readers answer 503 for the view
until every partition's replay has passed that offset.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.aggregator import metrics
from services.aggregator.applier import RedisLostData
from services.aggregator.config import AggregatorSettings
from services.aggregator.decode import DecodedBatch
from services.aggregator.marks import RedisRolledBack
from services.aggregator.retry import EPOCH, FORGET, MARKS, POSITION, BatchAbandoned, BatchContext
from shared.logs import get_logger
from shared.shutdown import close_within

if TYPE_CHECKING:
    from services.aggregator.consumer import Aggregator

log = get_logger(__name__)


async def topic_ends(settings: AggregatorSettings) -> dict[int, int]:
    """Where each partition's log ends now, for the partitions holding records (a group-less
    consumer's offset lookups: the member's own may not be started yet)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(settings.topic, p) for p in range(settings.partitions)]
        starts = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
    finally:
        await close_within("kafka_consumer", consumer.stop(), abort=consumer._client.close)
    return replay_targets(starts, ends)


def replay_targets(
    starts: dict[TopicPartition, int], ends: dict[TopicPartition, int]
) -> dict[int, int]:
    """Partition -> the offset its log ends at, for the partitions holding records: the
    replay of one that holds none writes no position, so could never reach its target."""
    return {tp.partition: end for tp, end in ends.items() if end > starts[tp]}


async def replay_from_start(member: Aggregator, reason: RedisLostData | RedisRolledBack) -> None:
    """Replay every assigned partition from the start; fences skip what survived.

    Called with the batch lock held and no tail pending. The stored positions are deleted
    first, so that a restart during the replay replays too rather than resume past what was
    lost; the marks are read anew, as Redis holds them now.
    """
    assigned = list(member.consumer.assignment())
    partitions = sorted(tp.partition for tp in assigned)
    context = BatchContext(member.settings.topic, tuple(partitions))
    try:
        forget = partial(member.applier.forget_positions, partitions)
        await member.retry.run(forget, POSITION, context)
        await member.retry.run(partial(member.applier.marks.adopt, partitions), MARKS, context)
    except BatchAbandoned as exc:
        exc.log()
        return
    metrics.REPLAYS.inc(len(assigned))
    if isinstance(reason, RedisRolledBack):
        log.warning("redis_rolled_back_replaying", partitions=partitions, **reason.fields())
    else:
        log.warning("redis_lost_data_replaying", reason=str(reason), partitions=partitions)
    member.consumer.pause(*assigned)
    try:
        for tp in assigned:
            member.applied.pop(tp, None)  # its lag counts from the log's start again
            await member.consumer.seek_to_beginning(tp)
    finally:
        member.generation += 1
        member.consumer.resume(*assigned)


async def replay_after_rollback(
    member: Aggregator, exc: RedisRolledBack, decoded: DecodedBatch, epoch: bytes | str | None
) -> bool:
    """After a batch found slots gone back in time (none of its calls landed on them):
    replay, which reads the batch again. False when abandoned for shutdown."""
    generation = member.generation
    if not await member.settle_tail():
        return False
    context = decoded.context(member.settings.topic)
    try:
        await _lost_data(member, context)  # Redis emptied: see below
        if epoch != member.applier.epoch:
            # This batch's calls on slots never written before may have landed on the
            # emptied Redis, and their fences would hide the replay (as in apply_batch).
            forget = partial(member.applier.forget, list(decoded.by_article))
            await member.retry.run(forget, FORGET, context)
    except BatchAbandoned as abandoned:
        abandoned.log()
        return False
    if generation == member.generation:  # unless the tail began the replay already
        await replay_from_start(member, exc)
    return True


async def check_marks(member: Aggregator) -> bool:
    """After the Redis masters or the epoch marker changed: replay if Redis lost its data
    (the marker gone or another; an idle topic has no batch to find out) or if some known
    apply mark went back. False when abandoned for shutdown."""
    async with member.batch_lock:
        if not await member.settle_tail():
            return False
        try:
            lost = await _lost_data(member, BatchContext(member.settings.topic))
            behind = {} if lost else await _marks_behind(member, member.applier.marks.partitions)
        except BatchAbandoned as exc:
            exc.log()
            return False
        if lost is not None:
            await replay_from_start(member, lost)
        elif behind:
            await replay_from_start(member, RedisRolledBack(behind))
        return True


async def release_marks(member: Aggregator, revoked: list[TopicPartition]) -> None:
    """Check the marks of partitions given up, then forget them.

    Where Redis went back in time unnoticed, the stored positions are deleted, so the next
    owner replays those partitions rather than resume past what was lost.
    """
    partitions = sorted(tp.partition for tp in revoked)
    try:
        if behind := await _marks_behind(member, partitions):
            forget = partial(member.applier.forget_positions, list(behind))
            await member.retry.run(forget, POSITION, BatchContext(member.settings.topic))
            log.warning("redis_rolled_back_positions_deleted", **RedisRolledBack(behind).fields())
    except BatchAbandoned as exc:
        exc.log()
    finally:
        member.applier.marks.drop(partitions)


async def _lost_data(member: Aggregator, context: BatchContext) -> RedisLostData | None:
    """Check the epoch marker (a missing one is created, with the replay targets): the loss
    it shows, if any."""
    try:
        await member.retry.run(member.applier.check_epoch, EPOCH, context)
    except RedisLostData as exc:
        return exc
    return None


async def _marks_behind(member: Aggregator, partitions: list[int]) -> dict[int, list[int]]:
    context = BatchContext(member.settings.topic, tuple(partitions))
    behind = partial(member.applier.marks.behind, partitions)
    return await member.retry.run(behind, MARKS, context)
