"""The raw Kafka side of draining: consume a topic from the beginning with aiokafka and
decode every record, nothing else. Prints one JSON line: events, seconds, events_per_second.

`python -m bench.baselines.raw_consume BOOTSTRAP TOPIC EVENTS`
"""

from __future__ import annotations

import sys
import time

import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.events import InvalidEvent, decode_event


async def consume(
    bootstrap: str, topic: str, events: int, timeout_s: float = 300.0
) -> dict[str, float]:
    """Read `events` records from the start of `topic`; time from the first batch on."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        seen = 0
        counted = 0
        started: float | None = None
        deadline = time.monotonic() + timeout_s
        while seen < events and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            n = 0
            for records in batch.values():
                for record in records:
                    try:  # noqa: SIM105 - suppress() costs more in this per-record loop
                        decode_event(record.value)
                    except InvalidEvent:
                        pass
                    n += 1
            seen += n
            if started is None:
                if n:
                    started = time.monotonic()
            else:
                counted += n
        elapsed = time.monotonic() - started if started is not None else 0.0
        return {
            "events": float(counted),
            "seconds": elapsed,
            "events_per_second": counted / elapsed if elapsed > 0 else 0.0,
        }
    finally:
        await consumer.stop()


def main() -> None:
    """Run once and print the JSON summary."""
    bootstrap, topic, events = sys.argv[1], sys.argv[2], int(sys.argv[3])
    result = uvloop.run(consume(bootstrap, topic, events))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
