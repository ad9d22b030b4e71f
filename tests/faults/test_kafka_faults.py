"""Kafka faults: the broker crashes under load or freezes at shutdown, garbage (of any size)
lands on the topic, the partition count is changed behind the services' back."""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
import time

import pytest

from deploy.local.kafka import KafkaBroker
from deploy.local.process import wait_for
from deploy.local.services import Service
from services.aggregator.deadletter import DEFAULT_MAX_RECORD_BYTES
from shared.events import InvalidEvent, ReactionEvent, decode_event
from shared.shutdown import CLOSE_TIMEOUT_S
from tests.faults.harness import (
    alter_partitions,
    group_members,
    log_lines_matching,
    produce_events,
    produce_raw,
)
from tests.faults.rig import LARGE_RECORD_BYTES, PARTITIONS, Rig
from tests.faults.traffic import wait_for_outcomes
from tests.support import eventually, read_topic


@pytest.mark.timeout(400)
async def test_broker_crash_gives_503s_never_a_false_202(
    own_kafka: KafkaBroker, kafka_rig: Rig
) -> None:
    rig = kafka_rig
    ingest = rig.start("ingest")
    aggregator = rig.start("aggregator")
    async with rig.traffic(ingest, seed=17) as traffic:
        await wait_for_outcomes(traffic, 500)
        own_kafka.kill()
        killed_at = time.monotonic()
        await wait_for_outcomes(traffic, 20, status=503, since=killed_at)
        await asyncio.to_thread(own_kafka.start)
        restarted_at = time.monotonic()
        # 202s resume once the producer reconnects to the restarted broker.
        await wait_for_outcomes(traffic, 300, since=restarted_at, timeout=120)
    statuses = traffic.statuses()
    unexpected = {s: n for s, n in statuses.items() if s not in (202, 429, 503)}
    assert not unexpected, f"only 202, 429 and 503 are answers to a broker outage: {statuses}"
    refusals = [o for o in traffic.outcomes if o.status == 503]
    assert all(o.retry_after for o in refusals), "every 503 carries Retry-After"
    assert aggregator.process.pid() is not None, "the aggregator survived the outage"
    await rig.oracle(traffic.outcomes)


# Each malformed value with the reason code the shared decoder gives it.
POISON: list[bytes | None] = [
    b"\x00\x01 not json at all",
    b"[1, 2, 3]",
    b'{"v": 2, "event_id": "e", "op": "set"}',
    b'{"v": 1, "event_id": "p1", "op": "set", "article_id": "a-1", "user_id": "u1", '
    b'"reaction": "Meh!", "ts": 1}',
    b'{"v": 1, "event_id": "p2", "op": "set", "article_id": "bad/id", "user_id": "u1", '
    b'"reaction": "like", "ts": 1}',
    b'{"v": 1, "event_id": "p3", "op": "flip", "article_id": "a-1", "user_id": "u1", "ts": 1}',
    b'{"v": 1, "event_id": "p4", "op": "clear", "article_id": "a-1", "user_id": "u1"}',
    b'{"v": 1, "event_id": "p5", "op": "set", "article_id": "a-2", "user_id": "\xc3\xa9", '
    b'"reaction": "like", "ts": 1}',
]


def _reason(value: bytes | None) -> str:
    try:
        decode_event(value)
    except InvalidEvent as exc:
        return exc.reason
    raise AssertionError(f"{value!r} is not poison")


async def test_poison_messages_are_dead_lettered_and_counts_unaffected(rig: Rig) -> None:
    ingest = rig.start("ingest")
    aggregator = rig.start("aggregator")
    async with rig.traffic(ingest, articles=50, seed=19) as traffic:
        await wait_for_outcomes(traffic, 300)
        # Garbage straight onto the topic, on partitions that also carry real events.
        poison = [(i % PARTITIONS, b"garbage-key", value) for i, value in enumerate(POISON)]
        await produce_raw(rig.bootstrap, rig.topic, poison)
        # A valid event produced the same way is counted like any other.
        direct = ReactionEvent.new("set", "a-1", "direct-reader", "wow")
        await produce_events(rig.bootstrap, rig.topic, PARTITIONS, [direct])
        await wait_for_outcomes(traffic, 300, since=time.monotonic())
    report = await rig.oracle(traffic.outcomes, direct_event_ids=(direct.event_id,))
    assert sorted(reason for _, reason in report.model.invalid) == sorted(map(_reason, POISON))
    assert report.model.articles["a-1"].readers.get("direct-reader") == "wow"
    assert aggregator.process.pid() is not None, "the aggregator kept going"

    dlq = f"{rig.topic}.dlq"

    async def dead_letters() -> list[tuple[bytes | None, str]]:
        found = []
        for record in await read_topic(rig.bootstrap, dlq):
            reasons = [v.decode() for k, v in record.headers if "reason" in k.lower()]
            found.append((record.value, reasons[0] if reasons else ""))
        return found

    letters = await eventually(
        dead_letters,
        lambda found: len(found) >= len(POISON),
        timeout=60,
        what=f"{len(POISON)} records in {dlq}",
    )
    assert sorted(v or b"" for v, _ in letters) == sorted(v or b"" for v in POISON), (
        "the DLQ holds each poison message once, with its original bytes"
    )
    for value, reason in letters:
        assert _reason(value) in reason, f"DLQ record {value!r} has reason header {reason!r}"


async def test_oversized_poison_is_dead_lettered_truncated_and_stalls_nothing(
    roomy_rig: Rig,
) -> None:
    rig = roomy_rig
    ingest = rig.start("ingest")
    aggregator = rig.start("aggregator")
    # One just under the default 1 MiB limit (over it with the dead-letter headers), one of
    # 10 MB; random bytes, so nothing but the digest can vouch for the stored prefix.
    rng = random.Random(37)
    poison = {
        0: b"\x00" + rng.randbytes(1_048_333 - 1),
        1: b"\x00" + rng.randbytes(10 * 1024 * 1024 - 1),
    }
    async with rig.traffic(ingest, articles=50, seed=37) as traffic:
        await wait_for_outcomes(traffic, 300)
        records = [(partition, b"poison", value) for partition, value in poison.items()]
        await produce_raw(rig.bootstrap, rig.topic, records, max_request_size=LARGE_RECORD_BYTES)
        # Votes after the poison, on every partition: the oracle needs each one counted.
        await wait_for_outcomes(traffic, 300, since=time.monotonic())
    report = await rig.oracle(traffic.outcomes)
    assert [reason for _, reason in report.model.invalid] == ["bad_json", "bad_json"]
    assert aggregator.process.pid() is not None, "the aggregator kept going"

    letters = await read_topic(rig.bootstrap, f"{rig.topic}.dlq", at_least=len(poison))
    assert len(letters) == len(poison)
    for letter in letters:
        headers = dict(letter.headers)
        original = poison[int(headers["source_partition"])]
        assert headers["reason"] == b"bad_json"
        assert headers["truncated"] == b"true"
        assert headers["original_size"] == str(len(original)).encode()
        assert headers["original_sha256"] == hashlib.sha256(original).hexdigest().encode()
        assert letter.value is not None and original.startswith(letter.value)
        size = len(letter.key or b"") + len(letter.value)
        size += sum(len(k.encode()) + len(v) for k, v in letter.headers)
        assert size <= DEFAULT_MAX_RECORD_BYTES


def _stop_while_frozen(broker: KafkaBroker, aggregator: Service) -> float:
    """SIGTERM the aggregator while the broker is frozen; seconds until it exited 0."""
    process = aggregator.process
    # Frozen, not gone: connections stay open and nothing answers.
    broker.process.signal(signal.SIGSTOP)
    try:
        stopping = time.monotonic()
        process.signal(signal.SIGTERM)
        wait_for(
            lambda: process.proc is not None and process.proc.poll() is not None,
            60,
            "the aggregator to exit",
        )
        took = time.monotonic() - stopping
    finally:
        broker.process.signal(signal.SIGCONT)
    assert process.proc is not None and process.proc.returncode == 0
    return took


@pytest.mark.faults_full
async def test_a_frozen_broker_cannot_hold_up_shutdown(
    own_kafka: KafkaBroker, kafka_rig: Rig
) -> None:
    # The consumer and the producer get CLOSE_TIMEOUT_S each; Redis closes at once.
    bound = 2 * CLOSE_TIMEOUT_S + 5
    # Still joining the group (its /readyz answers once the consumer exists): the start is
    # abandoned, the half-started clients closed within their bounds.
    starting = kafka_rig.start("aggregator")
    assert _stop_while_frozen(own_kafka, starting) < bound
    # A member of the group: leaving it would wait for aiokafka's 40 s request timeout.
    member = kafka_rig.start("aggregator")
    await eventually(
        lambda: group_members(kafka_rig.bootstrap, kafka_rig.group),
        lambda state: state == ("Stable", 1),
        timeout=60,
        what="one stable member",
    )
    took = _stop_while_frozen(own_kafka, member)
    assert took < bound, took
    assert log_lines_matching(member.process.log_path, '"close_timed_out"')


@pytest.mark.faults_full
async def test_changed_partition_count_stops_the_services(rig: Rig) -> None:
    ingest = rig.start("ingest")
    aggregator = rig.start("aggregator")
    ingest.stop()
    aggregator.stop()
    await alter_partitions(rig.bootstrap, rig.topic, PARTITIONS + 2)
    for name in ("ingest", "aggregator"):
        service = rig.start(name, wait=False)
        process = service.process
        wait_for(
            lambda process=process: process.proc is not None and process.proc.poll() is not None,
            60,
            f"{name} to refuse the changed topic",
        )
        assert process.proc is not None and process.proc.returncode == 2, (
            "a refusal to start exits with status 2"
        )
        # One line that names both counts, so an operator knows what changed.
        old, new = PARTITIONS, PARTITIONS + 2
        both = (
            rf"\b{new}\b[^0-9]*partition[^0-9]*\b{old}\b"
            rf"|\b{old}\b[^0-9]*partition[^0-9]*\b{new}\b"
        )
        log = process.log_path
        assert log_lines_matching(log, both), f"{name} did not say why:\n{log.read_text()[-2000:]}"
