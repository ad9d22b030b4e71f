"""Live tallies: one Redis pub/sub subscription per process, fanned out to SSE clients.

The aggregator publishes the ids of changed articles on `rx:changed` after each batch.
The feed holds that one subscription while any SSE client is connected, drops the
changed articles from the tally cache, and pushes each listened article's fresh tally to
its clients — at most `1 / interval` times a second per article. Each client has a
mailbox of one tally: a slow client skips intermediate tallies (the latest wins), so it
never blocks the others and never makes the process grow.

A subscription is a connection that only Redis talks on, so a dead one (Redis frozen, a
proxy or NAT that dropped the flow without a word) would look exactly like a quiet channel.
The feed therefore pings a subscription idle for `heartbeat_s` (5 s) and takes it for dead
when the ping, or the subscription itself, gets no answer within `heartbeat_s` more: a
dead subscription is noticed within 10 s of the last thing Redis said, and replaced by a
new one (retried with a backoff of at most 2 s), whose clients then get fresh tallies.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Final

import orjson
from prometheus_client import Counter, Gauge
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from services.reader.cache import TallyCache
from shared.logs import get_logger
from shared.tallies import CHANGES_CHANNEL

log = get_logger(__name__)

SSE_CLIENTS: Final = Gauge("reactions_reader_sse_clients", "Open SSE streams.")
SSE_MESSAGES: Final = Counter(
    "reactions_reader_sse_messages_total", "Tally events written to SSE streams."
)
SSE_COALESCED: Final = Counter(
    "reactions_reader_sse_coalesced_total",
    "Tally updates not sent on their own: merged into the next send of their article "
    "(rate limit) or replaced in a slow client's mailbox by a newer tally.",
)

# Renders the tally event body of one article (the plain GET's JSON).
TallyRenderer = Callable[[str], Awaitable[bytes]]

# An idle subscription is pinged after this long; no answer within as long again: dead.
HEARTBEAT_S: Final = 5.0
# The longest wait between two attempts to subscribe again.
MAX_BACKOFF_S: Final = 2.0
# The heartbeat's PING payload: redis-py swallows the answers to its own health checks
# only, so the feed sees the answers to these.
HEARTBEAT_MESSAGE: Final = "rx-heartbeat"


class SubscriptionDead(Exception):
    """Redis did not answer the subscription within the heartbeat: the connection is dead."""


class Mailbox:
    """One SSE client's queue, bounded to one tally: a newer tally replaces an unread one."""

    __slots__ = ("_ready", "_value")

    def __init__(self) -> None:
        self._value: bytes | None = None
        self._ready = asyncio.Event()

    def put(self, value: bytes) -> None:
        """Leave `value` for the client, replacing (and counting) any it has not read yet."""
        if self._value is not None:
            SSE_COALESCED.inc()
        self._value = value
        self._ready.set()

    async def take(self) -> bytes:
        """Wait for the latest tally and take it."""
        while self._value is None:
            self._ready.clear()
            await self._ready.wait()
        value, self._value = self._value, None
        self._ready.clear()
        return value


class ChangeFeed:
    """The process's subscription to `rx:changed` and its fan-out to SSE mailboxes."""

    def __init__(
        self,
        redis: Redis,
        cache: TallyCache,
        render: TallyRenderer,
        *,
        interval: float,
        heartbeat_s: float = HEARTBEAT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._cache = cache
        self._render = render
        self._interval = interval
        self._heartbeat_s = heartbeat_s
        self._clock = clock
        self._listeners: dict[str, set[Mailbox]] = {}
        self._last_sent: dict[str, float] = {}
        self._scheduled: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriber: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.clients = 0

    def add(self, article_id: str) -> Mailbox:
        """A mailbox receiving `article_id`'s tallies; subscribes when it is the first client."""
        mailbox = Mailbox()
        self._listeners.setdefault(article_id, set()).add(mailbox)
        self.clients += 1
        SSE_CLIENTS.inc()
        if self._subscriber is None:
            # A fresh event per subscription: a cancelled one cannot clear its successor's.
            self._subscribed = asyncio.Event()
            self._subscriber = asyncio.create_task(self._subscribe_loop(self._subscribed))
        return mailbox

    def remove(self, article_id: str, mailbox: Mailbox) -> None:
        """Stop delivering to `mailbox`; unsubscribes when it was the last client."""
        listeners = self._listeners.get(article_id)
        if listeners is None or mailbox not in listeners:
            return
        listeners.discard(mailbox)
        if not listeners:
            del self._listeners[article_id]
            self._last_sent.pop(article_id, None)
        self.clients -= 1
        SSE_CLIENTS.dec()
        if self.clients == 0 and self._subscriber is not None:
            # Kept until it finishes, so `close` can wait for its connection to close.
            self._subscriber.cancel()
            self._tasks.add(self._subscriber)
            self._subscriber.add_done_callback(self._tasks.discard)
            self._subscriber = None

    async def wait_subscribed(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait (bounded) until the subscription is up, so no change slips past a new client."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._subscribed.wait()

    async def close(self) -> None:
        """Cancel the subscription and pending sends (at shutdown)."""
        tasks = [*self._tasks, *([self._subscriber] if self._subscriber else [])]
        self._subscriber = None
        for task in tasks:
            task.cancel()
        # Bounded: closing a pub/sub connection must not hold up shutdown.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await asyncio.gather(*tasks, return_exceptions=True)

    def on_changed(self, article_ids: Iterable[str]) -> None:
        """The aggregator changed these articles: drop their cached tallies, push new ones."""
        changed = list(article_ids)
        self._cache.invalidate(changed)
        for article_id in changed:
            if article_id in self._listeners:
                self._schedule(article_id)

    def _schedule(self, article_id: str) -> None:
        # At most one send per article every `interval` (4 a second): a viral article
        # changes with every aggregator batch, and neither the reader's eye nor the
        # clients' connections gain from more; each send reads the freshest tally, so
        # merging changes loses nothing.
        if article_id in self._scheduled:
            SSE_COALESCED.inc()
            return
        self._scheduled.add(article_id)
        last = self._last_sent.get(article_id, -math.inf)
        delay = max(0.0, last + self._interval - self._clock())
        task = asyncio.create_task(self._send(article_id, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, article_id: str, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        # Unmark before reading: a change landing during the read schedules the next send.
        self._scheduled.discard(article_id)
        if article_id not in self._listeners:
            return
        self._last_sent[article_id] = self._clock()
        try:
            body = await self._render(article_id)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("tally_push_failed", article_id=article_id, error=repr(exc))
            self._schedule(article_id)
            return
        for mailbox in self._listeners.get(article_id, ()):
            mailbox.put(body)

    async def _subscribe_loop(self, subscribed: asyncio.Event) -> None:
        backoff = 0.1
        first = True
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(CHANGES_CHANNEL)
                async for message in self._messages(pubsub):
                    kind = message.get("type")
                    if kind == "message":
                        self.on_changed(_changed_ids(message.get("data")))
                    elif kind == "subscribe":
                        # Changes published while unsubscribed were missed: cached tallies
                        # may be stale, and clients of a resumed subscription need fresh ones.
                        self._cache.clear()
                        if not first:
                            self.on_changed(list(self._listeners))
                        first = False
                        subscribed.set()
                        backoff = 0.1
            except (RedisError, OSError, SubscriptionDead) as exc:
                log.warning("changes_subscription_lost", error=repr(exc))
            finally:
                subscribed.clear()
                # Bounded: the connection may be the dead one.
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    async with asyncio.timeout(self._heartbeat_s):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def _messages(self, pubsub: PubSub) -> AsyncIterator[dict[str, Any]]:
        """The subscription's messages, its confirmation first; raises SubscriptionDead when
        Redis leaves the subscription or a heartbeat unanswered for `heartbeat_s`."""
        loop = asyncio.get_running_loop()
        awaiting = True  # the subscription's confirmation
        until = loop.time() + self._heartbeat_s
        while True:
            message = await pubsub.get_message(timeout=max(0.0, until - loop.time()))
            now = loop.time()
            if message is not None:
                awaiting = False
                until = now + self._heartbeat_s
                yield message
            elif now < until:
                continue  # woke early: the answer to redis-py's own health check
            elif awaiting:
                raise SubscriptionDead(f"Redis did not answer within {self._heartbeat_s} s")
            else:
                await pubsub.ping(HEARTBEAT_MESSAGE)
                awaiting = True
                until = now + self._heartbeat_s


def _changed_ids(data: Any) -> list[str]:
    """The article ids of one `rx:changed` message; nothing for a malformed one."""
    try:
        ids = orjson.loads(data)
    except (orjson.JSONDecodeError, TypeError):
        log.warning("changes_message_malformed")
        return []
    if not isinstance(ids, list):
        return []
    return [i for i in ids if isinstance(i, str)]
