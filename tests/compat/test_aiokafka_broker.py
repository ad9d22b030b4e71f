"""Our aiokafka usage against this exact broker version: idempotent produce, group consume
with explicit commits, and a two-member rebalance."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.local.kafka import KafkaBroker
from shared.kafka import new_producer
from tests.support import eventually


async def _create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def test_idempotent_produce_and_group_consume_with_explicit_commit(
    kafka: KafkaBroker, topic: str
) -> None:
    await _create_topic(kafka.bootstrap, topic, 2)
    producer = new_producer(kafka.bootstrap)
    await producer.start()
    try:
        acks = [
            await producer.send_and_wait(topic, f"m{i}".encode(), key=b"k", partition=i % 2)
            for i in range(10)
        ]
        # The broker granted a producer id: the producer really is idempotent.
        assert producer._txn_manager is not None and producer._txn_manager.has_pid()
        assert producer._txn_manager.sequence_number(TopicPartition(topic, 0)) == 5
    finally:
        await producer.stop()
    assert sorted(a.offset for a in acks if a.partition == 0) == [0, 1, 2, 3, 4]

    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        seen: list[bytes] = []
        while len(seen) < 10:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
            for tp, records in batch.items():
                seen += [r.value for r in records]
                await consumer.commit({tp: records[-1].offset + 1})
        assert sorted(seen) == sorted(f"m{i}".encode() for i in range(10))
        for p in (0, 1):
            assert await consumer.committed(TopicPartition(topic, p)) == 5
    finally:
        await consumer.stop()


async def test_two_members_split_partitions_and_one_takes_over(
    kafka: KafkaBroker, topic: str
) -> None:
    await _create_topic(kafka.bootstrap, topic, 4)
    group = f"g-{uuid.uuid4().hex[:8]}"

    def member() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )

    first, second = member(), member()
    await first.start()
    await second.start()
    polls = [
        asyncio.create_task(_poll_forever(first)),
        asyncio.create_task(_poll_forever(second)),
    ]
    try:

        async def assignments() -> tuple[set[int], set[int]]:
            return (
                {tp.partition for tp in first.assignment()},
                {tp.partition for tp in second.assignment()},
            )

        # During the rebalance a member may still list partitions it is giving up, so wait
        # for the settled state: both members busy, every partition owned exactly once.
        await eventually(
            assignments,
            lambda ab: (
                bool(ab[0]) and bool(ab[1]) and ab[0] | ab[1] == {0, 1, 2, 3} and not ab[0] & ab[1]
            ),
            what="both members to share the partitions",
        )
        polls[1].cancel()
        await second.stop()
        await eventually(
            assignments,
            lambda ab: ab[0] == {0, 1, 2, 3},
            what="the remaining member to take every partition",
        )
    finally:
        for task in polls:
            task.cancel()
        await first.stop()
        await second.stop()


async def _poll_forever(consumer: AIOKafkaConsumer) -> None:
    while True:
        await consumer.getmany(timeout_ms=200)
