"""Helpers for tests: waiting on conditions with deadlines, and small HTTP shortcuts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 - a deadline for polling, not for one await
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Await `probe()` until `check` holds on its result; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await probe()
        if check(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(interval)


def wait_until(
    check: Callable[[], bool], *, timeout: float = 30.0, what: str = "condition"
) -> None:
    """Poll a synchronous condition until it holds, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
