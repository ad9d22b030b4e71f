"""Whether the Redis view can be served: not while it is being rebuilt from the log.

When Redis loses its data (a node replaced or restarted without its files), the aggregators
replay the whole topic into it; while they do, its counts are only part of the log, and a
zero or a low count served then would be kept by the edge and by browsers. Each count read
therefore reads two keys in the same round trip as the counts: the epoch marker
(`rx:epoch:{topic}`) and the replay targets (`rx:replay:{topic}`, which the aggregator that
finds the data gone creates together with a new marker, and whose entries the positions
script deletes as the replay passes them). The view is being rebuilt while the targets
exist, or while the marker is missing: between the loss and an aggregator noticing it, or
before the first aggregator ever started on this Redis (a reader cannot tell the two apart,
and a process started after the loss has seen no marker to miss). Reads then answer 503
`rebuilding`: the edge serves its last good copy meanwhile, and the widget keeps the
counts it shows.

When a rebuild ends, every live stream gets its articles' tallies anew: the notices of the
replay were held back while it ran.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Final

from prometheus_client import Gauge
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from shared.logs import get_logger
from shared.tallies import epoch_key, replay_key

log = get_logger(__name__)

# The view state a read returns beside its counts: bits of what exists.
EPOCH: Final = 1
REPLAYING: Final = 2
# While rebuilding, how often the end is looked for when no read finds it first.
WATCH_INTERVAL_S: Final = 1.0

REBUILDING: Final = Gauge(
    "reactions_reader_view_rebuilding",
    "1 while this reader answers 503 rebuilding: Redis lost its data and the aggregators "
    "replay the log into it.",
    multiprocess_mode="max",
)


class ViewRebuilding(Exception):
    """The view is being rebuilt from the log: any count read now may be only part of it."""


class ViewState:
    """What the reads of one process have seen of the view: rebuilding or not."""

    def __init__(self, redis: Redis, topic: str) -> None:
        self.redis = redis
        self.keys: tuple[str, str] = (epoch_key(topic), replay_key(topic))
        self.rebuilding = False
        self._on_rebuilt: list[Callable[[], None]] = []
        self._watch: asyncio.Task[None] | None = None

    def on_rebuilt(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever a rebuild ends."""
        self._on_rebuilt.append(callback)

    def ask(self, pipe: Pipeline) -> None:
        """Queue the view state's two reads on `pipe`, ahead of the counts (see `answer`)."""
        for key in self.keys:
            pipe.exists(key)

    def answer(self, epoch: int, replaying: int) -> None:
        """`check` with the replies of the two reads `ask` queued."""
        self.check(EPOCH * epoch + REPLAYING * replaying)

    def check(self, state: int) -> None:
        """Take the view state a read returned with its counts; raise ViewRebuilding when
        those counts must not be served."""
        if self._being_rebuilt(state):
            if not self.rebuilding:
                self.rebuilding = True
                REBUILDING.set(1)
                log.warning("view_rebuilding", replaying=bool(state & REPLAYING))
                self._watch = asyncio.create_task(self._watch_for_end())
            raise ViewRebuilding
        if self.rebuilding:
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            self._rebuilt()

    async def close(self) -> None:
        """Stop watching for the end of a rebuild (at shutdown)."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None

    async def _watch_for_end(self) -> None:
        # Streams may be the only readers of a page: nothing else would notice the end.
        while self.rebuilding:
            await asyncio.sleep(WATCH_INTERVAL_S)
            pipe = self.redis.pipeline(transaction=False)
            self.ask(pipe)
            try:
                epoch, replaying = await pipe.execute()
            except (RedisError, OSError, TimeoutError):
                continue  # the reads say Redis is away; look again later
            if not self._being_rebuilt(EPOCH * epoch + REPLAYING * replaying):
                self._watch = None
                self._rebuilt()

    def _being_rebuilt(self, state: int) -> bool:
        # Replay targets remain, or no aggregator has marked this Redis yet.
        return bool(state & REPLAYING) or not state & EPOCH

    def _rebuilt(self) -> None:
        self.rebuilding = False
        REBUILDING.set(0)
        log.info("view_rebuilt")
        for callback in self._on_rebuilt:
            callback()
