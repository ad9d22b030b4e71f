"""The aggregator's retry policy: how errors are classified, how long it waits, what it counts
and logs, and that shutdown ends it."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError
from prometheus_client import REGISTRY
from redis.exceptions import BusyLoadingError, DataError, NoScriptError, OutOfMemoryError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from structlog.testing import capture_logs

from services.aggregator.retry import (
    APPLY,
    DEAD_LETTER,
    BatchAbandoned,
    BatchContext,
    ErrorKind,
    RetryPolicy,
    classify,
)

CONTEXT = BatchContext.of_ranges("t", {3: (10, 52), 0: (7, 7)})


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (RedisConnectionError("refused"), ErrorKind.UNAVAILABLE),
        (RedisTimeoutError("timeout"), ErrorKind.UNAVAILABLE),
        (BusyLoadingError("loading"), ErrorKind.UNAVAILABLE),
        (ConnectionRefusedError(), ErrorKind.UNAVAILABLE),
        (OutOfMemoryError("OOM"), ErrorKind.RESPONSE),
        (NoScriptError("NOSCRIPT"), ErrorKind.RESPONSE),
        (DataError("bad argument"), ErrorKind.NOT_RETRIABLE),
        (KafkaConnectionError(), ErrorKind.UNAVAILABLE),
        (KafkaTimeoutError(), ErrorKind.UNAVAILABLE),
        (MessageSizeTooLargeError(), ErrorKind.NOT_RETRIABLE),
    ],
)
def test_errors_are_classified(error: Exception, kind: ErrorKind) -> None:
    assert classify(error) is kind
    assert kind.retriable == (kind is not ErrorKind.NOT_RETRIABLE)


def test_delays_double_up_to_the_ceiling_with_jitter() -> None:
    policy = RetryPolicy(asyncio.Event(), first_delay_s=0.05, max_delay_s=2.0)
    for attempt, ceiling in enumerate((0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0)):
        delays = {policy.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, delays)
        assert len(delays) > 1, "no jitter"


def retries(dependency: str) -> float:
    value = REGISTRY.get_sample_value(
        "reactions_aggregator_retries_total", {"dependency": dependency}
    )
    assert value is not None, f"no {dependency} series"
    return value


async def test_a_step_is_retried_until_it_succeeds_and_counted_by_dependency() -> None:
    failures = [RedisConnectionError("refused"), OutOfMemoryError("OOM")]

    async def flaky() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    redis_before, kafka_before = retries("redis"), retries("kafka")
    policy = RetryPolicy(asyncio.Event(), first_delay_s=0.001, max_delay_s=0.002)
    with capture_logs() as logs:
        assert await policy.run(flaky, APPLY, CONTEXT) == "done"
    assert retries("redis") == redis_before + 2
    assert retries("kafka") == kafka_before
    assert [(e["event"], e["error_kind"], e["retriable"]) for e in logs] == [
        ("retry", "unavailable", True),
        ("retry", "response", True),
    ]
    assert [(e["error_type"], e["error"]) for e in logs] == [
        ("ConnectionError", "refused"),
        ("OutOfMemoryError", "OOM"),
    ]
    for entry in logs:
        assert entry["step"] == "apply" and entry["dependency"] == "redis"
        assert entry["topic"] == "t" and entry["partitions"] == [0, 3]
        assert entry["offsets"] == "0:7..7 3:10..52"


async def test_an_error_retrying_cannot_fix_is_logged_as_such_and_retried_without_a_handler() -> (
    None
):
    failures = [MessageSizeTooLargeError()]

    async def too_large() -> None:
        if failures:
            raise failures.pop(0)

    kafka_before = retries("kafka")
    policy = RetryPolicy(asyncio.Event(), first_delay_s=0.001, max_delay_s=0.002)
    with capture_logs() as logs:
        await policy.run(too_large, DEAD_LETTER, CONTEXT)
    assert retries("kafka") == kafka_before + 1
    (entry,) = logs
    assert entry["log_level"] == "error"
    assert (entry["retriable"], entry["error_kind"]) == (False, "not_retriable")


async def test_an_error_retrying_cannot_fix_goes_at_once_to_the_steps_own_handler() -> None:
    too_large, refused, still_too_large = (
        MessageSizeTooLargeError(),
        KafkaConnectionError(),
        MessageSizeTooLargeError(),
    )
    failures: list[Exception] = [too_large, refused, still_too_large]

    async def send() -> str:
        if failures:
            raise failures.pop(0)
        return "sent"

    handled: list[BaseException] = []
    kafka_before = retries("kafka")
    policy = RetryPolicy(asyncio.Event(), first_delay_s=0.001, max_delay_s=0.002)
    with capture_logs() as logs:
        assert await policy.run(send, DEAD_LETTER, CONTEXT, on_not_retriable=handled.append) == (
            "sent"
        )
    assert handled == [too_large, still_too_large]
    # Only the retriable error waited and counted as a retry.
    assert retries("kafka") == kafka_before + 1
    assert [(e["event"], e["error_kind"]) for e in logs] == [("retry", "unavailable")]


async def test_shutdown_abandons_the_step_with_its_batch() -> None:
    stop = asyncio.Event()
    stop.set()

    async def down() -> None:
        raise RedisConnectionError("refused")

    with pytest.raises(BatchAbandoned) as abandoned:
        await RetryPolicy(stop).run(down, APPLY, CONTEXT)
    assert abandoned.value.step is APPLY
    assert abandoned.value.context == CONTEXT
    with capture_logs() as logs:
        abandoned.value.log()
    assert logs == [
        {
            "event": "batch_abandoned_for_shutdown",
            "log_level": "info",
            "step": "apply",
            "topic": "t",
            "partitions": [0, 3],
            "offsets": "0:7..7 3:10..52",
        }
    ]
