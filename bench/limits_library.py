"""Why ingest's in-memory limits are not the `limits` library's memory storage, measured:

    .venv/bin/python -m bench.limits_library [--held 10000 100000] [--busy-ms 0.1 1 5]

First, each of the library's strategies on its asynchronous memory storage, with `--held`
readers' keys in the window: the process CPU time of a hit on a new key followed by one
event-loop iteration, which is where the storage's expiry task runs. Then the moving
window's expiry under load: keys whose window has passed, and how many of them its
expiry task drops per second while each loop iteration is busy for `--busy-ms`
milliseconds (as serving requests keeps it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import uvloop
from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)

from bench.limit_check import per_check_us

STRATEGIES: dict[
    str, type[MovingWindowRateLimiter | SlidingWindowCounterRateLimiter | FixedWindowRateLimiter]
] = {
    "moving window": MovingWindowRateLimiter,
    "sliding window counter": SlidingWindowCounterRateLimiter,
    "fixed window": FixedWindowRateLimiter,
}
EXPIRED = 20_000
BUSY_FOR_S = 5.0


def stop_expiry(storage: MemoryStorage) -> None:
    """Cancel the storage's expiry task, so it does not outlive its measurement."""
    if storage.timer is not None:
        storage.timer.cancel()


async def hit_with_iteration_us(strategy: str, held: int, hits: int = 300) -> float:
    """CPU µs of a hit on a new key plus one loop iteration, with `held` keys held."""
    storage = MemoryStorage()
    limiter = STRATEGIES[strategy](storage)
    item = RateLimitItemPerMinute(60)
    for i in range(held):
        await limiter.hit(item, "reader", f"a.held-{i:020d}")
    await asyncio.sleep(0)

    async def hit(i: int) -> None:
        await limiter.hit(item, "reader", f"a.new-{i:020d}")

    try:
        return await per_check_us(hit, hits, yield_each=True)
    finally:
        stop_expiry(storage)


async def moving_window_drops_per_s(busy_ms: float) -> float:
    """Expired keys the moving window's storage drops a second while the loop is busy."""
    storage = MemoryStorage()
    limiter = MovingWindowRateLimiter(storage)
    item = RateLimitItemPerSecond(1000)
    for i in range(EXPIRED):
        await limiter.hit(item, "reader", f"a.gone-{i:020d}")
    await asyncio.sleep(1.2)  # every key's window has passed

    async def serve() -> None:
        # One busy stretch per loop iteration, and a hit that keeps the expiry scheduled.
        while True:
            until = time.perf_counter() + busy_ms / 1000
            while time.perf_counter() < until:
                pass
            await limiter.hit(item, "ip", "network")
            await asyncio.sleep(0)

    def expired_held() -> int:
        # Only the expired readers' keys: the network key serve() hits is not one of them.
        return sum(1 for key in storage.events if "a.gone-" in key)

    server = asyncio.create_task(serve())
    held = expired_held()
    await asyncio.sleep(BUSY_FOR_S)
    dropped = held - expired_held()
    server.cancel()
    stop_expiry(storage)
    return dropped / BUSY_FOR_S


async def main_async(held: list[int], busy_ms: list[float]) -> None:
    """Print both tables."""
    out = sys.stdout.write
    out("hit on a new key + one loop iteration, process CPU µs\n")
    out(f"{'strategy':24}" + "".join(f"{f'{k:,} held':>16}" for k in held) + "\n")
    for strategy in STRATEGIES:
        cells = [await hit_with_iteration_us(strategy, k) for k in held]
        out(f"{strategy:24}" + "".join(f"{c:16,.1f}" for c in cells) + "\n")
    out(f"\nmoving window: of {EXPIRED:,} expired keys, dropped per second\n")
    for ms in busy_ms:
        out(f"loop iterations busy {ms:g} ms: {await moving_window_drops_per_s(ms):,.0f}/s\n")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and measure."""
    parser = argparse.ArgumentParser(prog="python -m bench.limits_library", description=__doc__)
    parser.add_argument("--held", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--busy-ms", type=float, nargs="+", default=[0.1, 1.0, 5.0])
    args = parser.parse_args(argv)
    if not all(0 < k <= 1_000_000 for k in args.held) or not all(
        0 < ms <= 100 for ms in args.busy_ms
    ):
        parser.error("--held must be 1 to 1,000,000 and --busy-ms 0 to 100")
    uvloop.run(main_async(args.held, args.busy_ms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
