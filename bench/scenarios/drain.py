"""Aggregator drain: apply a pre-produced backlog with one aggregator process, against the raw
aiokafka consume rate of the same topic (decode only) and the raw Redis rate of the same
per-event Lua work (redis-benchmark, pipelined).

The service figure needs nothing but the contract: the aggregator stores each partition's
resume position in Redis after applying it, so the harness times the drain by watching
those keys. When bench/aggregator_drain.py exists, its `drain()` is measured too.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import shutil
import subprocess
import sys
import time
from importlib import resources
from typing import Any

import orjson
import redis

from bench.backlog import Workload, produce
from bench.context import Context
from bench.stats import Figure, Row, Target, paired_ratios, unavailable
from shared.kafka import TopicSpec, ensure_topics
from shared.tallies import position_key

BACKLOG_TOPIC = "bench-backlog"
DRAIN_DB = 1
LUA_DB = 4
HOOK_DB = 5


def raw_consume(bootstrap: str, topic: str, events: int) -> float:
    """Events/s of a plain aiokafka consumer decoding the topic, in its own process."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.baselines.raw_consume", bootstrap, topic, str(events)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return float(orjson.loads(out.stdout.strip().splitlines()[-1])["events_per_second"])


def redis_lua_rate(port: int, commands: int) -> float:
    """Calls/s of the per-event Lua work, pipelined 50 deep over 8 connections."""
    source = resources.files("bench").joinpath("baselines/per_event.lua").read_text()
    client = redis.Redis(port=port, db=LUA_DB)
    try:
        client.flushdb()
        sha = client.script_load(source)
    finally:
        client.close()
    out = subprocess.run(
        [
            shutil.which("redis-benchmark") or "redis-benchmark",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--dbnum",
            str(LUA_DB),
            "-c",
            "8",
            "-P",
            "50",
            "-n",
            str(commands),
            "-r",
            "1000000",
            "--csv",
            "EVALSHA",
            sha,
            "2",
            "rx:{bench-lua}:n",
            "rx:{bench-lua-__rand_int__}:u",
            "r__rand_int__",
            "love",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return parse_redis_benchmark_csv(out.stdout)


def parse_redis_benchmark_csv(stdout: str) -> float:
    """The requests/s figure of redis-benchmark's --csv output (last data line)."""
    for line in reversed(stdout.strip().splitlines()):
        cells = [c.strip('"') for c in line.split('","')]
        if len(cells) >= 2 and cells[1].replace(".", "", 1).isdigit():
            return float(cells[1])
    raise ValueError(f"no rate in redis-benchmark output: {stdout[-500:]!r}")


def drain_service(ctx: Context, events: int, round_no: int) -> float:
    """Events/s of one aggregator process draining the backlog into an emptied Redis db."""
    stack = ctx.stack
    client = redis.Redis(port=stack.redis.port, db=DRAIN_DB)
    client.flushdb()
    keys = [position_key(BACKLOG_TOPIC, p) for p in range(stack.partitions)]
    service = stack.start_service(
        "aggregator",
        REACTIONS_TOPIC=BACKLOG_TOPIC,
        REACTIONS_REDIS_URL=stack.redis_url(DRAIN_DB),
        REACTIONS_GROUP_ID=f"bench-drain-{round_no}-{time.time_ns()}",
    )
    try:
        deadline = time.monotonic() + 600
        first: tuple[float, int] | None = None
        while time.monotonic() < deadline:
            done = sum(int(v) for v in client.mget(keys) if v is not None)
            now = time.monotonic()
            if first is None and done > 0:
                first = (now, done)
            if done >= events:
                if first is None or now <= first[0]:
                    return 0.0
                return (events - first[1]) / (now - first[0])
            service.process.check_alive()
            time.sleep(0.02)
        raise TimeoutError("the aggregator did not drain the backlog within 10 minutes")
    finally:
        stack.stop_part(service)
        client.close()


def drain_hook() -> Any:
    """`bench.aggregator_drain.drain` when that module exists, else None."""
    try:
        module = importlib.import_module("bench.aggregator_drain")
    except ModuleNotFoundError:
        return None
    return getattr(module, "drain", None)


def call_drain(drain: Any, bootstrap: str, redis_url: str, topic: str, events: int) -> float:
    """Call `drain(bootstrap, redis_url, topic, …)`, passing the event count if it takes one."""
    params = inspect.signature(drain).parameters
    kwargs: dict[str, Any] = {}
    for name in ("events", "expected", "count", "total"):
        if name in params:
            kwargs[name] = events
            break
    value = drain(bootstrap, redis_url, topic, **kwargs)
    if inspect.isawaitable(value):
        value = asyncio.run(_await(value))
    return float(value)


async def _await(value: Any) -> Any:
    return await value


def run(ctx: Context) -> None:
    """Produce the backlog once, then alternate drain, raw consume and raw Redis rounds."""
    stack = ctx.stack
    events = ctx.sizes.drain_events
    workload = Workload(events=events)
    ctx.say(f"drain: producing a backlog of {events:,} events")
    asyncio.run(ensure_topics(stack.kafka.bootstrap, TopicSpec(BACKLOG_TOPIC, stack.partitions)))
    produced = asyncio.run(
        produce(stack.kafka.bootstrap, BACKLOG_TOPIC, stack.partitions, workload)
    )
    ctx.say(f"drain: backlog of {produced:,} events produced")
    hook = drain_hook()
    drained: list[float] = []
    consumed: list[float] = []
    lua: list[float] = []
    hooked: list[float] = []
    hook_error = ""
    for r in range(ctx.sizes.rounds):
        drained.append(drain_service(ctx, produced, r))
        consumed.append(raw_consume(stack.kafka.bootstrap, BACKLOG_TOPIC, produced))
        lua.append(redis_lua_rate(stack.redis.port, ctx.sizes.redis_benchmark_commands))
        if hook is not None and not hook_error:
            try:
                redis.Redis(port=stack.redis.port, db=HOOK_DB).flushdb()
                hooked.append(
                    call_drain(
                        hook,
                        stack.kafka.bootstrap,
                        stack.redis_url(HOOK_DB),
                        BACKLOG_TOPIC,
                        produced,
                    )
                )
            except Exception as exc:  # noqa: BLE001 - a broken hook is reported, not fatal
                hook_error = repr(exc)[:200]
        ctx.say(
            f"drain round {r + 1}: aggregator {drained[-1]:,.0f} ev/s, raw consume "
            f"{consumed[-1]:,.0f} ev/s, redis Lua {lua[-1]:,.0f} calls/s"
        )
    shape = (
        f"{produced:,} events, Zipf over {workload.articles:,} articles, "
        f"{workload.readers:,} readers, {workload.change_share + workload.clear_share:.0%} "
        "changes and clears"
    )
    ctx.add(
        Row(
            "drain",
            "aggregator (1 process) events/s",
            "ev/s",
            Figure.of(drained),
            "raw aiokafka consume, decode only",
            Figure.of(consumed),
            paired_ratios(drained, consumed),
            note=shape,
        ),
        Row(
            "drain",
            "aggregator (1 process) events/s",
            "ev/s",
            Figure.of(drained),
            "redis-benchmark -P 50, same per-event Lua",
            Figure.of(lua),
            paired_ratios(drained, lua),
            Target(">=", 100_000, "value"),
            "target is ≥ 100,000 ev/s per process",
        ),
    )
    if hooked and len(hooked) == len(consumed):
        ctx.add(
            Row(
                "drain",
                "bench.aggregator_drain.drain() events/s",
                "ev/s",
                Figure.of(hooked),
                "redis-benchmark -P 50, same per-event Lua",
                Figure.of(lua),
                paired_ratios(hooked, lua),
                Target(">=", 100_000, "value"),
            )
        )
    else:
        ctx.add(
            unavailable(
                "drain",
                "bench.aggregator_drain.drain() events/s",
                "ev/s",
                hook_error or "bench/aggregator_drain.py is not in this build",
                target=Target(">=", 100_000, "value"),
            )
        )
