"""Bounded shutdown: a client's close that hangs, even one deaf to cancellation, is aborted
within its bound; one that fails is logged, not raised."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiokafka.errors import KafkaConnectionError
from structlog.testing import capture_logs

from shared.shutdown import ABORT_TIMEOUT_S, close_within


async def test_a_close_deaf_to_cancellation_is_aborted_within_the_bound() -> None:
    connections_closed = asyncio.Event()

    async def stubborn_close() -> None:
        # Like aiokafka's group coordinator: cancelled, it goes on waiting for its reply,
        # which only fails once its connections are closed.
        while not connections_closed.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await connections_closed.wait()

    async def abort() -> None:
        connections_closed.set()

    started = time.monotonic()
    with capture_logs() as logs:
        await close_within("kafka_consumer", stubborn_close(), abort=abort, timeout_s=0.2)
    assert time.monotonic() - started < 0.2 + ABORT_TIMEOUT_S
    assert connections_closed.is_set()
    assert [(e["event"], e["client"]) for e in logs] == [("close_timed_out", "kafka_consumer")]


async def test_a_failing_close_is_logged_not_raised() -> None:
    async def refused() -> None:
        raise KafkaConnectionError("gone")

    with capture_logs() as logs:
        await close_within("kafka_producer", refused())
    assert [(e["event"], e["error_type"]) for e in logs] == [
        ("close_failed", "KafkaConnectionError")
    ]


async def test_a_close_that_ends_cancelled_after_its_abort_is_logged_not_raised() -> None:
    async def cancelled_close() -> None:
        raise asyncio.CancelledError

    with capture_logs() as logs:
        await close_within("kafka_consumer", cancelled_close())
    assert [(e["event"], e["error_type"]) for e in logs] == [("close_failed", "CancelledError")]
