"""One live-tally stream: the stream caps, and the SSE response written by hand.

The response is written by hand, not with a streaming library: an open stream costs the
server's connection and request task, a few small objects and one timer, and every write
is the frames the feed already encoded. (sse-starlette's task group cost about 46 KiB per
open stream.)
"""

from __future__ import annotations

import asyncio
import random
from typing import Final

from prometheus_client import Counter
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from services.reader.live import SSE_MESSAGES, ChangeFeed, Outbox
from shared.http import ApiError

# The SSE send rate limit per article (the contract's "at most 4 a second").
SSE_INTERVAL_S: Final = 0.25
# A client whose socket accepts nothing for this long is dropped.
SSE_SEND_TIMEOUT_S: Final = 30.0
# How soon a stream notices that its client went away.
DISCONNECT_CHECK_S: Final = 5.0
PING: Final = b": ping\n\n"
# Where a stream's response leaves itself for StreamHandoff (a scope key of ours).
HANDOFF: Final = "reactions.stream_handoff"
HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    # nginx (and ingress-nginx) would otherwise buffer the stream.
    (b"x-accel-buffering", b"no"),
]

SSE_REFUSED: Final = Counter(
    "reactions_reader_sse_refused_total",
    "SSE streams refused, by reason: max_clients (this process is full) or per_client "
    "(that client address already holds its share).",
    ["reason"],
)
for _reason in ("max_clients", "per_client"):
    SSE_REFUSED.labels(_reason)


def check_stream_room(feed: ChangeFeed, client: str, max_clients: int, per_client: int) -> None:
    """503 when this process holds `max_clients` streams; 429 when `client` holds `per_client`."""
    if feed.clients >= max_clients:
        SSE_REFUSED.labels("max_clients").inc()
        raise ApiError(
            503,
            "too_many_streams",
            "This server is at its stream limit; retry shortly.",
            {"Retry-After": str(random.randint(2, 10))},
        )
    if feed.client_streams(client) >= per_client:
        SSE_REFUSED.labels("per_client").inc()
        raise ApiError(
            429,
            "too_many_client_streams",
            f"This address already holds {per_client} live streams; close one (one stream "
            "per page carries all its articles).",
            {"Retry-After": str(random.randint(5, 15))},
        )


class LiveStream:
    """The long-lived part of one stream: the outbox's frames and keep-alives written
    until the client goes, the lifetime ends or the server stops."""

    __slots__ = ("feed", "keepalive", "lifetime", "outbox")

    def __init__(
        self, feed: ChangeFeed, outbox: Outbox, *, lifetime: float, keepalive: float
    ) -> None:
        self.feed = feed
        self.outbox = outbox
        self.lifetime = lifetime
        self.keepalive = keepalive

    def release(self) -> None:
        """Take the stream's outbox out of the feed (safe twice)."""
        self.feed.remove(self.outbox)

    async def run(self, receive: Receive, send: Send) -> None:
        """Write until the stream ends, however it ends; the outbox then leaves the feed."""
        loop = asyncio.get_running_loop()
        watch = _Watch(loop, self.outbox, receive, self.keepalive, self.lifetime)
        try:
            await self._write(send, watch)
        finally:
            watch.stop()
            self.release()

    async def _write(self, send: Send, watch: _Watch) -> None:
        outbox = self.outbox
        loop = watch.loop
        while True:
            await outbox.wait()
            if outbox.closed:
                return
            now = loop.time()
            if outbox.ending or now >= watch.deadline:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if outbox.pending:
                body = outbox.take()
            elif now - watch.last >= watch.keepalive:
                body = PING
            else:
                continue
            watch.since = now
            try:
                await send({"type": "http.response.body", "body": body, "more_body": True})
            except asyncio.CancelledError:
                if watch.uncancel_timed_out():
                    return  # dropped: the client read nothing for SSE_SEND_TIMEOUT_S
                raise
            watch.last = loop.time()
            watch.since = None


class TallyStream(Response):
    """The `text/event-stream` response of one stream, for one article or a page's many.

    Sends the headers, `retry:` and the frames given at connect, then hands the rest to
    StreamHandoff (or, served without it, runs it in place). A `Response` only so that
    the framework hands it on and adds its headers; none of its body handling is used.
    """

    def __init__(self, stream: LiveStream, first: bytes) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = list(HEADERS)
        self._stream = stream
        self._first = first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The start and the first frames pass through every middleware (CORS headers,
        # request metrics); the rest are body chunks, which none of them touches.
        stream = self._stream
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            # `retry` spreads the reconnections of streams that ended together.
            first = b"retry: %d\n\n" % random.randint(1000, 4000) + self._first
            self._first = b""
            await send({"type": "http.response.body", "body": first, "more_body": True})
            SSE_MESSAGES.inc(len(stream.outbox.articles))
        except BaseException:
            stream.release()
            raise
        handoff = scope.get(HANDOFF)
        if handoff is not None:
            handoff.append(stream)  # StreamHandoff runs it once the framework has returned
        else:
            await stream.run(receive, send)


class _Watch:
    """One timer per stream, re-armed only when it fires (no timer work per write): it
    notices a client that went away, a keep-alive or the end of the lifetime coming due,
    and a write that has waited too long for the socket."""

    __slots__ = (
        "deadline",
        "keepalive",
        "last",
        "loop",
        "outbox",
        "receive",
        "since",
        "timed_out",
        "timer",
        "writer",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        outbox: Outbox,
        receive: Receive,
        keepalive: float,
        lifetime: float,
    ) -> None:
        self.loop = loop
        self.outbox = outbox
        self.receive = receive
        self.keepalive = keepalive
        self.last = loop.time()
        self.deadline = self.last + lifetime
        self.since: float | None = None  # when the write in progress began
        self.timed_out = False
        self.writer = asyncio.current_task()
        self.timer = loop.call_at(self._next(self.last), self.tick)

    def _next(self, now: float) -> float:
        due = min(self.last + self.keepalive, now + DISCONNECT_CHECK_S)
        if self.deadline > now:
            due = min(due, self.deadline)
        if self.since is not None:
            due = min(due, self.since + SSE_SEND_TIMEOUT_S)
        return max(due, now + 0.001)

    def tick(self) -> None:
        """The timer fired: act on whatever came due, then re-arm."""
        now = self.loop.time()
        if self.since is not None and now - self.since >= SSE_SEND_TIMEOUT_S:
            self.timed_out = True
            if self.writer is not None:
                self.writer.cancel()
            return
        if _client_gone(self.receive):
            self.outbox.close()
            return
        if now >= min(self.last + self.keepalive, self.deadline):
            self.outbox.wake()
        self.timer = self.loop.call_at(self._next(now), self.tick)

    def uncancel_timed_out(self) -> bool:
        """After a cancellation in a write: True (and the cancellation withdrawn) when it
        was this watch dropping a client that stopped reading."""
        if not self.timed_out or self.writer is None:
            return False
        self.writer.uncancel()
        return True

    def stop(self) -> None:
        """Cancel the timer."""
        self.timer.cancel()


def _client_gone(receive: Receive) -> bool:
    """Whether the client has gone away, asked without waiting: one step of `receive`.

    The server's `receive` answers at once when the client has disconnected and would
    otherwise wait; a waiting step is closed again. This saves each stream a task of its
    own parked in `receive` (about 1.5 KiB) at the price of noticing within
    DISCONNECT_CHECK_S (writes to a gone client are dropped by the server meanwhile).
    """
    step = receive().__await__()
    try:
        step.send(None)
    except StopIteration as done:
        return bool(done.value["type"] == "http.disconnect")
    step.close()
    return False


class StreamHandoff:
    """ASGI wrapper around the whole app: runs the long-lived part of SSE streams after
    the framework has answered the request and let go of everything it held for it.

    A stream's request (validation, caps, first read, error shape, CORS, metrics) goes
    through FastAPI like any other; what stays open for minutes is then only this frame,
    the stream's own objects and the server's connection (about 13 KiB in all, of which
    the server's connection is 9).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/stream"):
            await self.app(scope, receive, send)
            return
        handoff: list[LiveStream] = []
        scope[HANDOFF] = handoff
        try:
            await self.app(scope, receive, send)
        except BaseException:
            for stream in handoff:
                stream.release()
            raise
        if not handoff:
            return
        _trim(scope)
        await handoff[0].run(receive, send)


# What the server reads from the scope once the response has started.
_SERVER_KEYS: Final = frozenset({"type", "method", "path", "client"})


def _trim(scope: Scope) -> None:
    """Drop what the framework hung on the scope for the request (exit stacks, the route, a
    copy of the lifespan state) and the headers: the server keeps the scope as long as the
    connection. Emptied and refilled, so the dict shrinks back too."""
    kept = {key: scope[key] for key in _SERVER_KEYS if key in scope}
    scope.clear()
    scope.update(kept)
    scope["headers"] = []
