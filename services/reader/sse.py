"""One live-tally stream: the stream limit, the events of one client, and the SSE response
that releases the client's mailbox however the stream ends."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from services.reader.live import SSE_MESSAGES, ChangeFeed, Mailbox
from shared.http import ApiError

# The SSE send rate limit per article (the contract's "at most 4 a second").
SSE_INTERVAL_S: Final = 0.25
# A client whose socket accepts nothing for this long is dropped.
SSE_SEND_TIMEOUT_S: Final = 30.0


def check_stream_room(feed: ChangeFeed, max_clients: int) -> None:
    """503 `too_many_streams` when this process already holds `max_clients` streams."""
    if feed.clients >= max_clients:
        raise ApiError(
            503,
            "too_many_streams",
            "This server is at its stream limit; retry shortly.",
            {"Retry-After": str(random.randint(2, 10))},
        )


async def tally_events(
    first: str, mailbox: Mailbox, *, lifetime: float, keepalive: float
) -> AsyncIterator[ServerSentEvent]:
    """`first`, then every tally left in `mailbox`, with keep-alives, for `lifetime` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lifetime
    # `retry` spreads reconnections after a restart or a lifetime's end.
    yield ServerSentEvent(data=first, event="tally", retry=random.randint(1000, 4000))
    SSE_MESSAGES.inc()
    # The keep-alive comment is sent from here rather than by sse-starlette's ping
    # task: one task less per open stream saves about 6 KiB of its ~50.
    while True:
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + keepalive)):
                body = await mailbox.take()
        except TimeoutError:
            if loop.time() >= deadline:
                return
            yield ServerSentEvent(comment="ping")
            continue
        yield ServerSentEvent(data=body.decode(), event="tally")
        SSE_MESSAGES.inc()


class TallyStream(EventSourceResponse):
    """An SSE response that releases its mailbox however the stream ends."""

    def __init__(
        self, content: AsyncIterator[ServerSentEvent], close: Callable[[], None], **kw: Any
    ) -> None:
        super().__init__(content, **kw)
        self._close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._close()


def tally_stream(events: AsyncIterator[ServerSentEvent], close: Callable[[], None]) -> TallyStream:
    """The stream response: no sse-starlette ping task, a send timeout, never buffered."""
    return TallyStream(
        events,
        close,
        ping=0,
        send_timeout=SSE_SEND_TIMEOUT_S,
        headers={"X-Accel-Buffering": "no", "Cache-Control": "no-store"},
    )
