"""Live tallies: one Redis pub/sub subscription per process, fanned out to SSE streams.

The aggregator publishes the ids of changed articles on `rx:changed` after each batch.
The feed holds that one subscription while any stream is open, drops the changed
articles from the tally cache, and sends each listened article's fresh tally — rendered
once, framed once as SSE bytes — to every stream that carries it, single- or
multi-article alike, at most `1 / interval` times a second per article. Each stream has
an outbox holding the latest frame per article: a slow client skips intermediate tallies,
so it never blocks the others and never makes the process grow.

A subscription is a connection that only Redis talks on, so a dead one (Redis frozen, a
proxy or NAT that dropped the flow without a word) would look exactly like a quiet channel.
The feed therefore pings a subscription idle for `heartbeat_s` (5 s) and takes it for dead
when the ping, or the subscription itself, gets no answer within `heartbeat_s` more: a
dead subscription is noticed within 10 s of the last thing Redis said, and replaced by a
new one (retried with a backoff of at most 2 s), whose streams then get fresh tallies.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

import orjson
from prometheus_client import Counter, Gauge, Histogram
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from services.reader.cache import TallyCache
from services.reader.view import ViewRebuilding
from shared.logs import get_logger
from shared.tallies import CHANGES_CHANNEL

log = get_logger(__name__)

SSE_CLIENTS: Final = Gauge(
    "reactions_reader_sse_clients", "Open SSE streams (a page's one multiplexed stream is one)."
)
SSE_STREAM_ARTICLES: Final = Histogram(
    "reactions_reader_sse_stream_articles",
    "Articles subscribed per opened SSE stream.",
    buckets=(1, 2, 5, 10, 20, 50, 100),
)
SSE_MESSAGES: Final = Counter(
    "reactions_reader_sse_messages_total", "Tally events written to SSE streams."
)
SSE_COALESCED: Final = Counter(
    "reactions_reader_sse_coalesced_total",
    "Tally updates not sent on their own: merged into the next send of their article "
    "(rate limit) or replaced in a slow client's outbox by a newer tally.",
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


def tally_frame(body: bytes) -> bytes:
    """One `event: tally` as it goes on the wire (the JSON is one line: orjson adds none)."""
    return b"event: tally\ndata: " + body + b"\n\n"


class Outbox:
    """One stream's unsent frames, the latest per article, and the wake-up of its writer."""

    __slots__ = ("_waiter", "articles", "client", "closed", "ending", "pending")

    def __init__(self, articles: tuple[str, ...], client: str) -> None:
        self.articles = articles
        self.client = client
        self.pending: dict[str, bytes] = {}
        self.closed = False
        self.ending = False
        self._waiter: asyncio.Future[None] | None = None

    def put(self, article_id: str, frame: bytes) -> None:
        """Leave `frame` for the writer, replacing (and counting) an unsent one of the article."""
        if article_id in self.pending:
            SSE_COALESCED.inc()
        self.pending[article_id] = frame
        self.wake()

    def take(self) -> bytes:
        """Every unsent frame, as one write."""
        frames = b"".join(self.pending.values())
        SSE_MESSAGES.inc(len(self.pending))
        self.pending.clear()
        return frames

    def close(self) -> None:
        """The client went away: the writer stops at its next wake-up."""
        self.closed = True
        self.wake()

    def end(self) -> None:
        """End the stream properly at the writer's next wake-up (server shutdown)."""
        self.ending = True
        self.wake()

    def wake(self) -> None:
        """Resume the writer if it waits."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until `wake` (at once when frames are pending or the stream is closed or ending)."""
        if self.pending or self.closed or self.ending:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class ChangeFeed:
    """The process's subscription to `rx:changed` and its fan-out to the streams' outboxes."""

    def __init__(
        self,
        redis: Redis,
        cache: TallyCache[Any],
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
        self._listeners: dict[str, set[Outbox]] = {}
        # The current frame of listened articles, shared by every stream that connects.
        self._frames: dict[str, bytes] = {}
        # Moves with every change notice: a frame rendered across one may be stale.
        self._generation = 0
        self._last_sent: dict[str, float] = {}
        self._scheduled: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriber: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._per_client: dict[str, int] = {}
        self.clients = 0

    def client_streams(self, client: str) -> int:
        """Streams open for one client key (an address or network)."""
        return self._per_client.get(client, 0)

    def add(self, article_ids: Sequence[str], client: str = "") -> Outbox:
        """An outbox receiving these articles' frames; subscribes for the first stream."""
        outbox = Outbox(tuple(article_ids), client)
        for article_id in outbox.articles:
            self._listeners.setdefault(article_id, set()).add(outbox)
        self._per_client[client] = self._per_client.get(client, 0) + 1
        self.clients += 1
        SSE_CLIENTS.inc()
        SSE_STREAM_ARTICLES.observe(len(outbox.articles))
        if self._subscriber is None:
            # A fresh event per subscription: a cancelled one cannot clear its successor's.
            self._subscribed = asyncio.Event()
            self._subscriber = asyncio.create_task(self._subscribe_loop(self._subscribed))
        return outbox

    def remove(self, outbox: Outbox) -> None:
        """Stop delivering to `outbox` (safe twice); unsubscribes after the last stream."""
        if outbox.client not in self._per_client:
            return
        removed = False
        for article_id in outbox.articles:
            listeners = self._listeners.get(article_id)
            if listeners is None or outbox not in listeners:
                continue
            removed = True
            listeners.discard(outbox)
            if not listeners:
                del self._listeners[article_id]
                self._last_sent.pop(article_id, None)
                self._frames.pop(article_id, None)
        if not removed:
            return
        remaining = self._per_client[outbox.client] - 1
        if remaining:
            self._per_client[outbox.client] = remaining
        else:
            del self._per_client[outbox.client]
        self.clients -= 1
        SSE_CLIENTS.dec()
        if self.clients == 0 and self._subscriber is not None:
            # Kept until it finishes, so `close` can wait for its connection to close.
            self._subscriber.cancel()
            self._tasks.add(self._subscriber)
            self._subscriber.add_done_callback(self._tasks.discard)
            self._subscriber = None

    async def wait_subscribed(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait (bounded) until the subscription is up, so no change slips past a new stream."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._subscribed.wait()

    async def current_frames(self, article_ids: Sequence[str]) -> list[bytes]:
        """The current frame of each article: shared when the feed holds one, else rendered
        (their counts read in one round trip first) and kept for the next stream."""
        missing = [a for a in article_ids if a not in self._frames]
        if len(missing) > 1:
            await self._cache.get_many(missing)  # one pipeline; each render below then hits
        frames = []
        for article_id in article_ids:
            frame = self._frames.get(article_id)
            if frame is None:
                generation = self._generation
                frame = tally_frame(await self._render(article_id))
                self._keep(article_id, frame, generation)
            frames.append(frame)
        return frames

    def _keep(self, article_id: str, frame: bytes, generation: int) -> None:
        # Only while subscribed (no notice can be missed) and when no notice came during
        # the render; otherwise the next stream renders again.
        if (
            generation == self._generation
            and self._subscribed.is_set()
            and article_id in self._listeners
        ):
            self._frames[article_id] = frame

    def end_streams(self) -> None:
        """End every open stream properly (the server is stopping; browsers reconnect)."""
        for outbox in {o for listeners in self._listeners.values() for o in listeners}:
            outbox.end()

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

    def refresh(self) -> None:
        """Send every stream its articles' tallies anew (a rebuild of the view ended)."""
        self.on_changed(list(self._listeners))

    def on_changed(self, article_ids: Iterable[str]) -> None:
        """The aggregator changed these articles: drop their cached tallies, push new ones."""
        changed = list(article_ids)
        self._cache.invalidate(changed)
        self._generation += 1
        for article_id in changed:
            if article_id in self._listeners:
                self._frames.pop(article_id, None)
                self._schedule(article_id)

    def _schedule(self, article_id: str) -> None:
        # At most one send per article every `interval` (4 a second): a viral article
        # changes with every aggregator batch, and neither the reader's eye nor the
        # clients' connections gain from more; each send reads the freshest tally, so
        # merging changes loses nothing. A change after a quiet spell goes out at once.
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
        generation = self._generation
        try:
            frame = tally_frame(await self._render(article_id))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("tally_push_failed", article_id=article_id, error=repr(exc))
            self._schedule(article_id)
            return
        except ViewRebuilding:
            return  # the end of the rebuild sends every article anew (`refresh`)
        self._keep(article_id, frame, generation)
        # One frame, the same bytes, for every stream of the article.
        for outbox in self._listeners.get(article_id, ()):
            outbox.put(article_id, frame)

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
                        # may be stale, and streams of a resumed subscription need fresh ones.
                        self._forget_all()
                        if not first:
                            self.on_changed(list(self._listeners))
                        first = False
                        subscribed.set()
                        backoff = 0.1
            except (RedisError, OSError, SubscriptionDead) as exc:
                log.warning("changes_subscription_lost", error=repr(exc))
            finally:
                subscribed.clear()
                self._forget_all()
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

    def _forget_all(self) -> None:
        self._cache.clear()
        self._frames.clear()
        self._generation += 1


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
