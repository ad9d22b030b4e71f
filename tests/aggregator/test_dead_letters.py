"""Dead letters of any size: a record too big for the producer is stored truncated with its
size and digest, one the dead-letter topic refuses is stored as headers only, and one it
refuses even so is logged and skipped; none of them stalls a partition."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import ConsumerRecord
from redis.asyncio import Redis

from deploy.local.kafka import KafkaBroker
from services.aggregator.deadletter import (
    DEFAULT_MAX_RECORD_BYTES,
    HEADERS_LIMIT,
    KEY_LIMIT,
    full_letter,
    minimal_letter,
)
from shared.events import InvalidEvent, partition_for
from tests.aggregator.view import PARTITIONS, Send, counts, settled
from tests.support import ServiceFactory, TopicRecord, metric, read_topic

# What the session broker takes (message.max.bytes 1048588) and the aggregator's producer
# refuses once the dead-letter headers are added: the record that stalled a partition.
NEAR_THE_LIMIT = 1_048_333


def source(value: bytes | None, key: bytes | None = b"k", headers: Any = ()) -> ConsumerRecord:
    return ConsumerRecord(
        topic="t",
        partition=2,
        offset=41,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=list(headers),
    )


BAD = InvalidEvent("bad_json", "unexpected character")


def test_a_letter_within_the_bound_is_the_record_plus_its_reason_and_source() -> None:
    letter = full_letter(source(b"{oops", headers=[("trace", b"t-1")]), BAD, 1000)
    assert (letter.key, letter.value) == (b"k", b"{oops")
    assert letter.headers == [
        ("trace", b"t-1"),
        ("reason", b"bad_json"),
        ("detail", b"unexpected character"),
        ("source_topic", b"t"),
        ("source_partition", b"2"),
        ("source_offset", b"41"),
    ]


def test_an_oversized_letter_is_truncated_within_the_bound_with_size_and_digest() -> None:
    value = bytes(range(256)) * 4096  # 1 MiB
    big_headers = [(f"h{i}", b"v" * 1000) for i in range(40)]
    original = source(value, key=b"K" * 5000, headers=big_headers)
    letter = full_letter(original, BAD, DEFAULT_MAX_RECORD_BYTES)
    assert letter.size() <= DEFAULT_MAX_RECORD_BYTES
    headers = dict(letter.headers)
    assert headers["truncated"] == b"true"
    assert headers["original_size"] == str(len(value)).encode()
    assert headers["original_sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["reason"] == b"bad_json" and headers["source_offset"] == b"41"
    assert letter.key == b"K" * KEY_LIMIT
    assert letter.value is not None and value.startswith(letter.value)
    kept = [h for h in letter.headers if h[0].startswith("h")]
    assert kept == big_headers[: len(kept)], "the original headers are kept in order"
    assert sum(len(k) + len(v) for k, v in kept) <= HEADERS_LIMIT
    # What is left of the bound goes to the value.
    assert letter.size() > DEFAULT_MAX_RECORD_BYTES - 100


def test_a_minimal_letter_has_no_value() -> None:
    value = b"x" * 10_000
    letter = minimal_letter(source(value, key=b"K" * 5000), BAD)
    assert (letter.key, letter.value) == (b"K" * KEY_LIMIT, None)
    # A record needs a key or a value: a keyless one gets an empty key.
    assert minimal_letter(source(value, key=None), BAD).key == b""
    headers = dict(letter.headers)
    assert headers["original_size"] == b"10000"
    assert headers["original_sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["truncated"] == b"true" and headers["reason"] == b"bad_json"
    assert letter.size() < 1500


async def dead_letters(bootstrap: str, topic: str, at_least: int) -> list[TopicRecord]:
    return await read_topic(bootstrap, f"{topic}.dlq", at_least=at_least)


async def test_a_poison_record_too_big_for_the_producer_is_stored_truncated(
    start_service: ServiceFactory,
    producer: Any,
    send: Send,
    redis: Redis,
    kafka: KafkaBroker,
    topic: str,
) -> None:
    aggregator = start_service("aggregator")
    poison = b"\x00" + b"p" * (NEAR_THE_LIMIT - 1)
    partition = partition_for("a1", PARTITIONS)
    meta = await producer.send_and_wait(topic, poison, key=b"a1\x1fu1", partition=partition)
    # After it on its own partition and on the others: all counted.
    await send("set", "a1", "u1", "wow")
    await send("set", "other-article", "u2", "like")
    await settled(redis, kafka.bootstrap, topic)
    assert await counts(redis, "a1") == {"wow": 1}
    assert await counts(redis, "other-article") == {"like": 1}

    [letter] = await dead_letters(kafka.bootstrap, topic, 1)
    headers = dict(letter.headers)
    assert headers["source_offset"] == str(meta.offset).encode()
    assert headers["truncated"] == b"true"
    assert headers["original_size"] == str(len(poison)).encode()
    assert headers["original_sha256"] == hashlib.sha256(poison).hexdigest().encode()
    assert letter.value is not None and poison.startswith(letter.value)
    assert len(letter.value) <= DEFAULT_MAX_RECORD_BYTES
    assert (
        await metric(
            aggregator.url, "reactions_aggregator_events_total", {"outcome": "dead_lettered"}
        )
        == 1
    )


async def set_max_message_bytes(bootstrap: str, topic: str, limit: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(limit)}
        )
        await admin.alter_configs([resource])
    finally:
        await admin.close()


async def test_letters_the_dead_letter_topic_refuses_are_stored_minimal_or_skipped(
    start_service: ServiceFactory,
    producer: Any,
    send: Send,
    redis: Redis,
    kafka: KafkaBroker,
    topic: str,
) -> None:
    # The dead-letter topic takes 4 KiB records: a truncated letter (up to 256 KiB) is
    # refused, its headers alone are not.
    await set_max_message_bytes(kafka.bootstrap, f"{topic}.dlq", 4096)
    aggregator = start_service("aggregator")
    poison = b"q" * 300_000
    partition = partition_for("a1", PARTITIONS)
    first = await producer.send_and_wait(topic, poison, key=b"k1", partition=partition)
    await send("set", "a1", "u1", "love")
    await settled(redis, kafka.bootstrap, topic)
    [letter] = await dead_letters(kafka.bootstrap, topic, 1)
    headers = dict(letter.headers)
    assert (letter.key, letter.value) == (b"k1", None)
    assert headers["source_offset"] == str(first.offset).encode()
    assert headers["original_size"] == b"300000"
    assert headers["original_sha256"] == hashlib.sha256(poison).hexdigest().encode()

    # Now it refuses even the headers: the letter is logged and skipped, never retried.
    await set_max_message_bytes(kafka.bootstrap, f"{topic}.dlq", 64)
    second = await producer.send_and_wait(topic, poison, key=b"k2", partition=partition)
    await send("set", "a1", "u1", "sad")
    await send("set", "other-article", "u2", "like")
    await settled(redis, kafka.bootstrap, topic)
    assert await counts(redis, "a1") == {"sad": 1}
    assert await counts(redis, "other-article") == {"like": 1}
    assert await metric(aggregator.url, "reactions_aggregator_dead_letter_failures_total") == 1

    aggregator.stop()  # its log is complete once it has exited
    log = aggregator.process.log_path.read_text().splitlines()
    lines = [orjson.loads(line) for line in log if line.startswith("{")]
    [failed] = [line for line in lines if line.get("event") == "dead_letter_failed"]
    assert (failed["topic"], failed["partition"], failed["offset"]) == (
        topic,
        partition,
        second.offset,
    )
    assert failed["error_type"] == "MessageSizeTooLargeError"
