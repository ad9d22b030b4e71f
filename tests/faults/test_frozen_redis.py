"""Redis frozen, not gone: a TCP relay between the services and Redis is stopped with
SIGSTOP, so every connection stays open and nothing answers (a hung proxy, a stopped
process, a network path that drops packets). Every wait must have a deadline.

The relay is the fault tests' own (`tests.faults.relay`), a process of its own so that it
can be stopped and continued.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from deploy.local.process import free_port
from tests.faults.relay import Relay
from tests.faults.rig import Rig
from tests.faults.traffic import Outcome, wait_for_outcomes
from tests.support import assert_error, eventually, metric

# Once Redis answers again, an SSE client has a fresh tally within this long: the reader's
# subscription is back within its 2 s backoff, and the aggregator's batch within its 2 s
# retry backoff; the rest is the pipeline's ordinary latency.
UPDATES_RESUME_WITHIN_S = 10.0


@contextlib.contextmanager
def relay_to(target_port: int, work_dir: Path) -> Iterator[Relay]:
    """The fault tests' relay to `target_port`, on a free port, stopped after the test."""
    work_dir.mkdir(parents=True, exist_ok=True)
    relay = Relay(free_port(), ("127.0.0.1", target_port), work_dir)
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


class Tallies:
    """The tallies one SSE client receives, with when each arrived."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, dict[str, Any]]] = []

    async def follow(self, http: httpx.AsyncClient, url: str) -> None:
        async with http.stream("GET", url) as response:
            assert response.status_code == 200
            event = None
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "tally":
                    self.seen.append((time.monotonic(), orjson.loads(line.split(":", 1)[1])))

    async def count(self) -> int:
        return len(self.seen)

    async def first_after(self, moment: float, check: Any) -> float | None:
        """When the first tally after `moment` satisfying `check` arrived, if one did."""
        return next((at for at, tally in self.seen if at >= moment and check(tally)), None)


@contextlib.asynccontextmanager
async def watching(http: httpx.AsyncClient, url: str) -> AsyncIterator[Tallies]:
    tallies = Tallies()
    task = asyncio.create_task(tallies.follow(http, url))
    try:
        await eventually(tallies.count, bool, timeout=30, what="the first tally")
        yield tallies
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await task


async def readiness(http: httpx.AsyncClient, url: str) -> tuple[int, dict[str, bool], float]:
    started = time.monotonic()
    response = await http.get(f"{url}/readyz")
    return response.status_code, response.json()["checks"], time.monotonic() - started


@pytest.mark.faults_full
@pytest.mark.timeout(400)
async def test_frozen_redis_is_waited_out_with_deadlines_then_caught_up_exactly(
    rig: Rig, tmp_path: Path
) -> None:
    with relay_to(rig.redis_server.port, tmp_path / "relay") as relay:
        via_relay = relay.url
        # Ingest counts its rate limits in this Redis too: it must not need it.
        ingest = rig.start(
            "ingest",
            REACTIONS_RATE_LIMIT_STORAGE=via_relay,
            REACTIONS_IP_HASH_SALT="a-salt-shared-by-every-instance",
        )
        aggregator = rig.start("aggregator", REACTIONS_REDIS_URL=via_relay)
        reader = rig.start("reader", REACTIONS_REDIS_URL=via_relay)
        stream = f"{reader.url}/v1/articles/watched/reactions/stream"
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(10, read=60)) as http,
            rig.traffic(ingest, articles=30, seed=41) as traffic,
            watching(http, stream) as tallies,
        ):
            await wait_for_outcomes(traffic, 300)
            retries = await metric(
                aggregator.url, "reactions_aggregator_retries_total", {"dependency": "redis"}
            )
            relay.freeze()
            frozen_at = time.monotonic()
            try:
                # /readyz names what is down, within its 1 s probe timeout.
                status, checks, took = await readiness(http, reader.url)
                assert (status, checks) == (503, {"redis": False}) and took < 2.0, took
                status, checks, took = await readiness(http, aggregator.url)
                assert (status, checks) == (503, {"redis": False, "kafka": True}), checks
                assert took < 2.0, took
                status, checks, _ = await readiness(http, ingest.url)
                assert (status, checks) == (200, {"kafka": True})
                # Reads answer 503 with Retry-After within the 2 s socket timeout (an
                # article no one read yet: nothing in the micro-cache).
                started = time.monotonic()
                response = await http.get(f"{reader.url}/v1/articles/a-1/reactions")
                assert time.monotonic() - started < 5.0
                assert_error(response, 503, "redis_unavailable")
                assert response.headers["retry-after"] == "1"
                # Ingest keeps accepting: its limit store fails open within 0.5 s.
                await wait_for_outcomes(traffic, 50, since=frozen_at, timeout=60)
                # The aggregator's batch times out (15 s) and is retried, not skipped.
                await eventually(
                    lambda: metric(
                        aggregator.url,
                        "reactions_aggregator_retries_total",
                        {"dependency": "redis"},
                    ),
                    lambda n: n > retries,
                    timeout=60,
                    interval=0.5,
                    what="the aggregator to retry its batch",
                )
            finally:
                relay.thaw()
            resumed_at = time.monotonic()

            vote = Outcome("set", "watched", "a.after-resume", "wow", None, resumed_at)
            assert (await traffic.send(vote)).status == 202
            arrived = await eventually(
                lambda: tallies.first_after(resumed_at, lambda t: t["counts"]["wow"] >= 1),
                lambda at: at is not None,
                timeout=60,
                what="an SSE tally with the vote made after Redis came back",
            )
            assert arrived is not None
            assert arrived - resumed_at < UPDATES_RESUME_WITHIN_S, arrived - resumed_at
            await wait_for_outcomes(traffic, 200, since=resumed_at)
        statuses = traffic.statuses()
        assert set(statuses) <= {202}, f"ingest never needed Redis: {statuses}"
        assert (await http_ready(reader.url)) == 200
    await rig.oracle(traffic.outcomes)


async def http_ready(url: str) -> int:
    async with httpx.AsyncClient(timeout=10) as http:
        return (await http.get(f"{url}/readyz")).status_code
