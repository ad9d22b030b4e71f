"""Redis faults: a crash, a wipe, a pause longer than a batch, running out of memory."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.harness import positions
from tests.faults.oracle import assert_consistent_prefix
from tests.faults.rig import PARTITIONS, Rig
from tests.faults.traffic import wait_for_outcomes
from tests.support import assert_error, eventually, metric, read_topic


async def _positions_advance(rig: Rig, timeout: float = 60.0) -> None:  # noqa: ASYNC109
    """Wait until the aggregator stores a newer position for some partition than now."""
    before = await positions(rig.redis, rig.topic, PARTITIONS)
    await eventually(
        lambda: positions(rig.redis, rig.topic, PARTITIONS),
        lambda now: any(now[p] > before.get(p, -1) for p in now),
        timeout=timeout,
        what="the aggregator to apply another batch",
    )


async def _oom_errors(rig: Rig) -> int:
    stats = await rig.redis.info("errorstats")
    return int(stats.get("errorstat_OOM", {}).get("count", 0))


def _aof_tail(rig: Rig) -> Path:
    """The AOF file Redis appends to now (Redis 7 keeps a base and incremental files)."""
    files = sorted(
        (rig.redis_server.data_dir / "appendonlydir").glob("*.incr.aof"),
        key=lambda path: int(path.name.split(".")[-3]),
    )
    assert files, "redis-server keeps no incremental AOF file"
    return files[-1]


@pytest.mark.faults_full
async def test_redis_crash_resumes_from_what_redis_kept(rig: Rig) -> None:
    ingest = rig.start("ingest")
    aggregator = rig.start("aggregator")
    async with rig.traffic(ingest, seed=23) as traffic:
        await wait_for_outcomes(traffic, 500)
        await _positions_advance(rig)
        # What an fsync would have made durable by now; everything Redis applies from here
        # is in the second a host crash loses with `appendfsync everysec`.
        aof = _aof_tail(rig)
        durable = aof.stat().st_size
        await _positions_advance(rig)
        applied = await positions(rig.redis, rig.topic, PARTITIONS)
        rig.redis_server.kill()
        # A SIGKILL alone loses nothing the kernel has: cut the AOF back to what was synced.
        os.truncate(aof, durable)
        # Stopped while Redis starts, so the restarted Redis is seen before anything is
        # written to it again (well within the group's session timeout).
        aggregator.process.signal(signal.SIGSTOP)
        try:
            await asyncio.to_thread(rig.redis_server.start)
            kept = await positions(rig.redis, rig.topic, PARTITIONS)
        finally:
            aggregator.process.signal(signal.SIGCONT)
        lost = {p: (n, kept.get(p)) for p, n in applied.items() if kept.get(p, -1) < n}
        assert lost, f"the restarted Redis lost nothing: positions {applied} before, {kept} after"
        await wait_for_outcomes(traffic, 300, since=time.monotonic())
        await _positions_advance(rig)
        await wait_for_outcomes(traffic, 300, since=time.monotonic())
    await rig.oracle(traffic.outcomes)


@pytest.mark.faults_full
async def test_wiped_redis_is_rebuilt_by_replay(rig: Rig) -> None:
    ingest = rig.start("ingest")
    aggregator = rig.start("aggregator")
    async with rig.traffic(ingest, seed=29) as traffic:
        await wait_for_outcomes(traffic, 800)
        await _positions_advance(rig)
        await asyncio.to_thread(_wipe, rig)
        await wait_for_outcomes(traffic, 300, since=time.monotonic())
    assert aggregator.process.pid() is not None
    # The aggregator must notice the loss and replay the topic; the oracle then compares
    # every article the topic ever mentioned, including those untouched since the wipe.
    await rig.oracle(traffic.outcomes)


@pytest.mark.faults_full
async def test_a_wiped_redis_is_never_served_as_counts(rig: Rig) -> None:
    """From the moment Redis comes back empty until the replay has passed where the log
    ended, the reader answers 503 rebuilding, never the part replayed so far (which the
    edge would keep); then the counts from before the loss."""
    ingest = rig.start("ingest")
    aggregator = rig.start("aggregator")
    # Without the micro-cache: its tallies from before the loss are right ones.
    reader = rig.start("reader", REACTIONS_READER_CACHE_TTL_MS="0")
    async with rig.traffic(ingest, seed=31, articles=60) as traffic:
        await wait_for_outcomes(traffic, 800)
    await rig.oracle(traffic.outcomes)
    articles = sorted({o.article_id for o in traffic.outcomes})
    url = f"{reader.url}/v1/reactions?ids={','.join(articles)}"
    answers: list[httpx.Response] = []

    async def read() -> httpx.Response:
        answers.append(await http.get(url))
        return answers[-1]

    async with httpx.AsyncClient(timeout=10) as http:
        before = await read()
        assert before.status_code == 200
        # Frozen, the aggregator notices nothing until it runs again: the reader alone
        # must see that the data it served is gone.
        aggregator.process.signal(signal.SIGSTOP)
        try:
            await asyncio.to_thread(_wipe, rig)
            # (The reader's old connections fail first.)
            back = await eventually(read, lambda r: code_of(r) != "redis_unavailable")
            assert_error(back, 503, "rebuilding")
        finally:
            aggregator.process.signal(signal.SIGCONT)
        await eventually(read, lambda r: r.status_code == 200, timeout=120, what="the counts")

    for answer in answers[1:-1]:
        assert_error(answer, 503)
        assert code_of(answer) in {"rebuilding", "redis_unavailable"}
    assert counts_of(answers[-1]) == counts_of(before)
    assert await metric(reader.url, "reactions_reader_view_rebuilding") == 0


def code_of(answer: httpx.Response) -> str | None:
    """The error code of an answer, None for a success."""
    return None if answer.is_success else str(answer.json()["error"]["code"])


def counts_of(answer: httpx.Response) -> dict[str, dict[str, int]]:
    """Each article's counts in a bulk read (the seq may move: a replay appends correctives)."""
    return {a: entry["counts"] for a, entry in answer.json()["articles"].items()}


def _wipe(rig: Rig) -> None:
    """Kill Redis and start it with no data at all, as a replaced Redis node comes back."""
    rig.redis_server.kill()
    for path in rig.redis_server.data_dir.iterdir():
        if path.name != "redis.log":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    rig.redis_server.start()


@pytest.mark.faults_full
async def test_paused_redis_delays_but_skips_nothing(rig: Rig) -> None:
    ingest = rig.start("ingest")
    rig.start("aggregator")
    async with rig.traffic(ingest, seed=31) as traffic:
        await wait_for_outcomes(traffic, 300)
        for _ in range(3):
            await _positions_advance(rig)
            # Longer than a batch takes: the aggregator's applies queue up behind the pause.
            await rig.redis.execute_command("CLIENT", "PAUSE", 3000, "ALL")
            await wait_for_outcomes(traffic, 100, since=time.monotonic())
    await rig.oracle(traffic.outcomes)


@pytest.mark.faults_full
async def test_redis_out_of_memory_stalls_then_catches_up_exactly(rig: Rig) -> None:
    ingest = rig.start("ingest")
    aggregator = rig.start("aggregator")
    async with rig.traffic(ingest, seed=37, readers=2000) as traffic:
        await wait_for_outcomes(traffic, 300)
        await _positions_advance(rig)
        # Below what Redis already uses: with noeviction every write is refused from now on,
        # while reads go on (a limit just above the usage would be crossed only now and then).
        used = int((await rig.redis.info("memory"))["used_memory"])
        await rig.redis.config_set("maxmemory", used // 2)
        await eventually(
            lambda: _oom_errors(rig), lambda n: n > 0, timeout=60, what="Redis to refuse writes"
        )
        await wait_for_outcomes(traffic, 200, since=time.monotonic())
    # The aggregator keeps retrying the same batch rather than skipping it or dying.
    refused = await _oom_errors(rig)
    await eventually(
        lambda: _oom_errors(rig),
        lambda n: n > refused + 2,
        timeout=60,
        what="the aggregator to keep retrying",
    )
    records = await read_topic(rig.bootstrap, rig.topic)
    behind = await assert_consistent_prefix(rig.redis, records, PARTITIONS)
    assert behind > 0, "the aggregator stalled behind the topic while Redis was full"
    assert aggregator.process.pid() is not None, "the aggregator waits, it does not die"
    await rig.redis.config_set("maxmemory", 0)
    await rig.oracle(traffic.outcomes)
