"""The in-process cost of one rate-limit check on the vote path, and the memory a limit
holds per key, with the limits counted in process memory (the default store):

    .venv/bin/python -m bench.limit_check [--held 60000] [--checks 20000]

Cases: a new reader (a key never seen, with `--held` other readers' keys already in the
window, as a crowd of new readers makes it); one network at the default 600/minute (its
window full of votes, so the check refuses with 429); one network with the limits lifted as
the bench runs ingest (`--held` votes in its window). Each check is timed alone, then with
one event-loop iteration after it (minus an idle iteration), which is where a store's
background expiry runs. Process CPU time, so other work on the machine does not count.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import uvloop

from services.ingest.config import IngestSettings
from services.ingest.ratelimit import RateLimits
from shared.http import ApiError

LIFTED = "100000000/minute"


def limits(ip: str = "600/minute", reader: str = "60/minute") -> RateLimits:
    """Rate limits as ingest builds them, in process memory."""
    return RateLimits(
        IngestSettings(rate_limit_storage="memory://", rate_limit_ip=ip, rate_limit_reader=reader)
    )


async def checked(check: Awaitable[None]) -> None:
    """Await a check; a 429 is one of the outcomes measured, not a failure."""
    try:
        await check
    except ApiError as exc:
        if exc.status != 429:
            raise


async def per_check_us(
    check: Callable[[int], Awaitable[None]], count: int, *, yield_each: bool
) -> float:
    """Process CPU microseconds per `check(i)`, optionally with a loop iteration after each."""
    started = time.process_time()
    for i in range(count):
        await checked(check(i))
        if yield_each:
            await asyncio.sleep(0)
    return (time.process_time() - started) / count * 1e6


async def idle_iteration_us(count: int) -> float:
    """Process CPU microseconds of one loop iteration with nothing else to do."""
    started = time.process_time()
    for _ in range(count):
        await asyncio.sleep(0)
    return (time.process_time() - started) / count * 1e6


async def bytes_per_key(held: int) -> float:
    """Python memory allocated per new reader key held by the per-reader limit."""
    fresh = limits()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(held):
        await fresh.check("reader", f"a.memory-{i:020d}")
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return grown / held


async def measure(held: int, checks: int) -> list[tuple[str, float, float]]:
    """(case, µs per check, µs per check with its loop iteration) for each case."""
    idle = await idle_iteration_us(checks)
    crowd = limits()
    for i in range(held):
        await checked(crowd.check("reader", f"a.held-{i:020d}"))

    def new_reader(i: int) -> Awaitable[None]:
        return crowd.check("reader", f"a.new-{i:020d}")

    default = limits()
    for _ in range(default.items["ip"].amount):
        await checked(default.check("ip", "network"))

    def refused(_: int) -> Awaitable[None]:
        return default.check("ip", "network")

    lifted = limits(ip=LIFTED)
    for _ in range(held):
        await lifted.check("ip", "network")

    def busy_network(_: int) -> Awaitable[None]:
        return lifted.check("ip", "network")

    results = []
    cases = (
        (f"new reader, {held:,} readers held", new_reader),
        ("one network over 600/minute (429)", refused),
        (f"one network, {held:,} votes in its window", busy_network),
    )
    for name, check in cases:
        alone = await per_check_us(check, checks, yield_each=False)
        with_loop = await per_check_us(check, checks, yield_each=True) - idle
        results.append((name, alone, with_loop))
    return results


async def main_async(held: int, checks: int) -> None:
    """Print the table and the memory per held key."""
    out = sys.stdout.write
    out(f"{'case':44} {'check µs':>9} {'+ loop µs':>10}\n")
    for name, alone, with_loop in await measure(held, checks):
        out(f"{name:44} {alone:9.1f} {with_loop:10.1f}\n")
    out(f"memory per new reader key held: {await bytes_per_key(held):,.0f} bytes\n")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and measure."""
    parser = argparse.ArgumentParser(prog="python -m bench.limit_check", description=__doc__)
    parser.add_argument("--held", type=int, default=60_000, help="keys or votes already held")
    parser.add_argument("--checks", type=int, default=20_000, help="checks timed per case")
    args = parser.parse_args(argv)
    if not (0 < args.held <= 2_000_000 and 0 < args.checks <= 1_000_000):
        parser.error("--held and --checks must be positive and bounded")
    uvloop.run(main_async(args.held, args.checks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
