"""End to end: open-loop votes at 25, 50 and 75 % of ingest's maximum, latency from each 202
to the vote showing in the tally (SSE when the reader streams, else polling).

The maximum is measured here, with the whole pipeline running — the aggregator applying
every vote, the reader announcing them on page streams — not taken from the ingest
scenario, where ingest has the machine to itself: on two shared cores that figure would
load the pipeline past what it can carry, and measure the queue."""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import uvloop

from bench.context import Context
from bench.latency import LatencyResult, latency_table, open_loop, readers_needed, summary_ms
from bench.scenarios.ingest import CONNECTIONS
from bench.sse_clients import UNCAPPED
from bench.stats import Figure, Row, Target, paired_ratios
from bench.wrk import run_wrk

LEVELS = (0.25, 0.50, 0.75)
# The stream sends at most 4 updates a second per article (DESIGN), so a probe article
# voted on more often would measure that cap (up to 250 ms), not the pipeline. Two votes a
# second per probe article keep every update leading its interval; `python -m bench spike`
# shows the single-viral-article case.
SSE_VOTES_PER_ARTICLE = 2.0
FALLBACK_MAX_RPS = 400.0
P99_TARGETS_MS = {0.50: Target("<=", 100, "value"), 0.75: Target("<=", 250, "value")}
# Page streams held open while the maximum is measured, each on articles the load votes on.
PIPELINE_STREAMS = 40
MAX_RUNS = 3


def hold_streams(reader: str, stop: threading.Event) -> None:
    """Hold PIPELINE_STREAMS page streams, reading every byte, until `stop` is set."""

    async def hold() -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def one(i: int) -> None:
                ids = ",".join(f"bench-a{i * 8 + j + 1}" for j in range(8))
                async with session.get(f"{reader}/v1/stream?ids={ids}") as response:
                    async for _ in response.content.iter_any():
                        pass

            streams = [asyncio.create_task(one(i)) for i in range(PIPELINE_STREAMS)]
            # The stop comes from another thread: wait for it off the loop.
            await asyncio.to_thread(stop.wait)
            for stream in streams:
                stream.cancel()
            await asyncio.gather(*streams, return_exceptions=True)

    uvloop.run(hold())


def pipeline_max(ctx: Context, ingest_url: str, reader_url: str) -> list[float]:
    """Ingest's saturation rate (wrk, as the ingest scenario) while the aggregator applies
    the votes and the reader streams them: one figure per run."""
    stop = threading.Event()
    streams = threading.Thread(target=hold_streams, args=(reader_url, stop), daemon=True)
    streams.start()
    try:
        tokens = str(ctx.stack.tokens_file())
        return [
            run_wrk(
                ingest_url,
                "put",
                [tokens, "10000", "bench-a"],
                duration_s=ctx.sizes.wrk_seconds,
                connections=CONNECTIONS,
            ).ok_per_second
            for _ in range(MAX_RUNS)
        ]
    finally:
        stop.set()
        streams.join(30)


def run(ctx: Context) -> None:
    """Three rounds per load level; each percentile is the median over rounds."""
    stack = ctx.stack
    ctx.say("e2e: starting ingest, aggregator, reader")
    # One stream per probe article, all from this one address: past the reader's caps.
    ingest, aggregator, reader = stack.start_services(
        ("ingest", {}), ("aggregator", {}), ("reader", UNCAPPED)
    )
    measured = pipeline_max(ctx, ingest.url, reader.url)
    max_rps = Figure.of(measured).median or FALLBACK_MAX_RPS
    alone = ctx.facts.get("ingest_max_rps")
    ctx.say(f"e2e: ingest maximum with the pipeline running {max_rps:,.0f}/s")
    ctx.add(
        Row(
            "e2e",
            "ingest max, whole pipeline running",
            "req/s",
            Figure.of(measured),
            "ingest alone, 1 worker, pinned" if alone else None,
            Figure.of([alone] * len(measured)) if alone else None,
            paired_ratios(measured, [alone] * len(measured)) if alone else None,
            note=f"wrk -t1 -c{CONNECTIONS} with the aggregator applying and the reader "
            f"streaming to {PIPELINE_STREAMS} page streams; the e2e loads are shares of this",
        )
    )
    by_level: dict[float, list[LatencyResult]] = {level: [] for level in LEVELS}
    # Probe articles are fresh per run, so the same readers vote anew in every run.
    most = readers_needed(max_rps * LEVELS[-1], ctx.sizes.e2e_seconds, 4)
    tokens = stack.tokens(max(most, 20))
    # Discarded warm-up: the first votes wait for the consumer group to settle and for
    # connections and metadata to be set up, which is start-up, not steady-state latency.
    uvloop.run(
        open_loop(ingest.url, reader.url, tokens=tokens, rate=20, duration_s=1, settle_timeout_s=30)
    )
    for r in range(ctx.sizes.rounds):
        for level in LEVELS:
            result = uvloop.run(
                open_loop(
                    ingest.url,
                    reader.url,
                    tokens=tokens,
                    rate=max(max_rps * level, 1.0),
                    duration_s=ctx.sizes.e2e_seconds,
                    aggregator_metrics=f"{aggregator.url}/metrics",
                    settle_timeout_s=ctx.sizes.settle_seconds,
                    sse_votes_per_article=SSE_VOTES_PER_ARTICLE,
                )
            )
            by_level[level].append(result)
            v = summary_ms(result.visible_hist)
            ctx.say(
                f"e2e round {r + 1} at {level:.0%}: {result.achieved_rate:,.0f}/s "
                f"p99 {v['p99']:.1f} ms ({result.method})"
            )
    for part in (reader, aggregator, ingest):
        stack.stop_part(part)

    table = latency_table([(f"{lvl:.0%}", runs[-1]) for lvl, runs in by_level.items()])
    ctx.facts["e2e_table_last_round"] = table
    method = by_level[LEVELS[0]][0].method
    how = (
        f"202 → `event: tally` on the SSE stream, {SSE_VOTES_PER_ARTICLE:g} votes/s per "
        "probe article (below the stream's 4 updates/s per article)"
        if method == "sse"
        else "202 → total seen by polling GET, one request per 10 ms (reader has no SSE stream)"
    )
    for level, runs in by_level.items():
        summaries = [summary_ms(x.visible_hist) for x in runs]
        achieved = Figure.of([x.achieved_rate for x in runs])
        for key in ("p50", "p90", "p99", "p99.9", "max"):
            ctx.add(
                Row(
                    "e2e",
                    f"{key} at {level:.0%} load",
                    "ms",
                    Figure.of([s[key] for s in summaries]),
                    target=P99_TARGETS_MS.get(level) if key == "p99" else None,
                    note=(
                        f"{how}; target {max_rps * level:,.0f}/s, sent {achieved.median:,.0f}/s; "
                        "open loop (sends keep their schedule: no coordinated omission), "
                        "one hdrhistogram sample per vote"
                    )
                    if key == "p99"
                    else "",
                    extra={"method": method, "runs": [x.to_json() for x in runs]}
                    if key == "p50"
                    else {},
                )
            )
        unseen = sum(x.unseen for x in runs)
        failed = sum(x.failed for x in runs)
        lags = [x.max_lag for x in runs if x.max_lag is not None]
        drains = [x.lag_drain_s for x in runs if x.lag_drain_s is not None]
        ctx.add(
            Row(
                "e2e",
                f"max consumer lag at {level:.0%} load",
                "events",
                Figure.of(lags) if lags else None,
                note=(
                    f"drained in {Figure.of(drains).median:.1f}s after the load"
                    if drains
                    else (
                        "n/a: aggregator exports no reactions_aggregator_consumer_lag"
                        if not lags
                        else ""
                    )
                )
                + (
                    f"; {failed} PUTs failed, {unseen} votes never seen" if failed or unseen else ""
                ),
            )
        )
