"""Bounded shutdown: closing a client must not hang a process whose peer is gone or frozen.

aiokafka's `stop()` leaves the group and flushes what is pending, and redis-py's `aclose()`
closes its connections, each waiting on the network: a frozen broker or Redis would hold
up SIGTERM until the client's own request timeout (aiokafka's is 40 s) or the OS gives up.
A timeout alone is not enough: aiokafka's background tasks swallow the cancellation and go
on waiting. So a close that overruns its bound is aborted by closing the client's
connections under it, which fails at once whatever was waiting on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from shared.logs import get_logger

log = get_logger(__name__)

CLOSE_TIMEOUT_S: Final = 5.0
# How long an aborted close may take to notice that its connections are gone.
ABORT_TIMEOUT_S: Final = 2.0


async def close_within(
    client: str,
    close: Awaitable[object],
    *,
    abort: Callable[[], Awaitable[object]] | None = None,
    timeout_s: float = CLOSE_TIMEOUT_S,
) -> None:
    """Await a client's `stop()` or `aclose()` for at most `timeout_s`, then `abort` it
    (close its connections); a close that fails or overruns is logged and left behind."""
    closing = asyncio.ensure_future(close)
    done, _ = await asyncio.wait({closing}, timeout=timeout_s)
    if not done:
        log.warning("close_timed_out", client=client, timeout_s=timeout_s)
        if abort is not None:
            await asyncio.wait({asyncio.ensure_future(abort())}, timeout=ABORT_TIMEOUT_S)
        done, _ = await asyncio.wait({closing}, timeout=ABORT_TIMEOUT_S)
        if not done:
            closing.cancel()
            return
    if closing.cancelled():
        # An aborted aiokafka close can end cancelled (its fetcher cancels its own tasks).
        log.warning("close_failed", client=client, error_type="CancelledError", error="")
        return
    exc = closing.exception()
    if isinstance(exc, KafkaError | RedisError | OSError):
        log.warning("close_failed", client=client, error_type=type(exc).__name__, error=str(exc))
    elif exc is not None:
        raise exc
