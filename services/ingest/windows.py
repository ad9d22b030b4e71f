"""Moving-window limits in process memory whose size follows the window, not the traffic.

Why not the `limits` library's memory storage (measured with `python -m bench.limit_check`
and the soak scenario; see the README): its moving window expires keys in a background
pass that awaits a thread hop per key, so it drops about one key per event-loop iteration.
On a busy ingest an iteration serves many requests and lasts milliseconds, so the pass
drops a few hundred keys a second while a crowd of new readers adds one per vote, and
memory grows for as long as the crowd lasts. Its fixed and sliding-window counters expire
in one synchronous pass over every key, run again on each loop iteration: bounded, but
about 28 ms per iteration at 100,000 keys. The Redis-backed store stays on the library:
Redis expires the keys there.
"""

from __future__ import annotations

import time
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable


class MovingWindow:
    """At most `limit` accepted hits per key in any `window_s` seconds: a hit counts while it
    is at most `window_s` old, as in the library's moving window (refused hits do not count).

    Keys are ordered by their last accepted hit, so every hit first drops the keys at the
    front whose last hit has left the window: what is held is the keys hit within the last
    window, whatever the rate of new keys, and no pass over all keys is ever made. A key's
    times are trimmed once an eighth of them have left the window, which keeps a hit O(1)
    amortized even for one network with tens of thousands of votes in its window.
    """

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a moving window needs a limit of 1 or more and a positive length")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        # Arrays of doubles, not lists of floats: 8 bytes a time, and nothing for the
        # garbage collector to walk however many keys are held.
        self._hits: OrderedDict[str, array[float]] = OrderedDict()

    def __len__(self) -> int:
        """Keys held."""
        return len(self._hits)

    def times_held(self) -> int:
        """Hit times held over all keys (those trimmed away not counted)."""
        return sum(len(times) for times in self._hits.values())

    def hit(self, key: str) -> float | None:
        """Count one hit on `key`: None when accepted, else the seconds until one would be."""
        now = self._clock()
        horizon = now - self.window_s
        hits = self._hits
        while hits:
            if next(iter(hits.values()))[-1] >= horizon:
                break
            hits.popitem(last=False)
        times = hits.get(key)
        if times is None:
            hits[key] = array("d", (now,))
            return None
        expired = bisect_left(times, horizon)
        if len(times) - expired >= self.limit:
            # The hit `limit` back from the newest is the one whose leaving makes room.
            return times[-self.limit] + self.window_s - now
        times.append(now)
        hits.move_to_end(key)
        if expired * 8 >= len(times):
            del times[:expired]
        return None
