"""Soak: ten minutes (two with BENCH_QUICK=1) of votes at ingest's measured maximum, each by
a reader never seen before, with a churn of page streams on the reader (200 opens a second,
20 articles each, held 1–5 s), and the resident memory of ingest, the aggregator and the
reader sampled throughout. The target: flat after the first window (the limits' window),
at most 1 MB/min of growth per service. Runs only when named: `make soak`, or
`BENCH_ONLY=soak`; writes bench/results/soak.{json,md,png} (soak-quick.* when quick)."""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from limits import parse

from bench.context import Context
from bench.report import RESULTS_DIR
from bench.soak import soak, write
from bench.sse_clients import UNCAPPED
from bench.stack import BenchStack, machine_description
from bench.stats import Figure, Row, Target, paired_ratios
from bench.wrk import run_wrk
from services.ingest.config import IngestSettings

FULL_S, QUICK_S = 600.0, 120.0
STREAMS_PER_S = 200.0
TARGET_MB_PER_MIN = 1.0
CONNECTIONS = 32
MEASURE_S = 5.0
MINT = (sys.executable, "-m", "services.ingest", "mint-tokens")
# Votes are paced at the measured maximum; a few tokens to spare.
TOKEN_MARGIN = 1.05

# The soak keeps the limits a deployment runs with, so their memory is what is measured;
# only the per-network limit is lifted, since wrk is one address.
DEFAULT_LIMITS = {
    "REACTIONS_RATE_LIMIT_READER": str(IngestSettings.model_fields["rate_limit_reader"].default),
    "REACTIONS_RATE_LIMIT_TOKENS": str(IngestSettings.model_fields["rate_limit_tokens"].default),
}


def limits_window_s() -> float:
    """The window of the per-reader limit by default (60 s)."""
    return float(parse(DEFAULT_LIMITS["REACTIONS_RATE_LIMIT_READER"]).get_expiry())


def mint(stack: BenchStack, count: int, out: Path, processes: int = 2) -> Path:
    """`count` tokens of fresh anonymous readers signed with the stack's key, written with
    `python -m services.ingest mint-tokens` in `processes` processes at once."""
    env = {**os.environ, **stack.keys.env(), "REACTIONS_LOG_LEVEL": "WARNING"}
    share = math.ceil(count / processes)
    parts = [out.with_suffix(f".part{n}") for n in range(processes)]
    running = [
        subprocess.Popen(
            [*MINT, "--count", str(share), "--out", str(part)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for part in parts
    ]
    for proc in running:
        _, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(f"mint-tokens failed: {err.decode()[-500:]}")
    with out.open("wb") as joined:
        for part in parts:
            joined.write(part.read_bytes())
            part.unlink()
    return out


def run(ctx: Context) -> None:
    """Start the three services, measure ingest's maximum, mint the readers, soak."""
    stack = ctx.stack
    duration = QUICK_S if ctx.quick else FULL_S
    interval = 2.0 if ctx.quick else 5.0
    window = limits_window_s()
    machine = machine_description()
    ctx.say("soak: starting ingest, aggregator, reader")
    ingest, aggregator, reader = stack.start_services(
        ("ingest", DEFAULT_LIMITS), ("aggregator", {}), ("reader", UNCAPPED)
    )
    measured = run_wrk(
        ingest.url,
        "walk",
        [str(stack.tokens_file()), "1", "10000", "bench-a"],
        duration_s=MEASURE_S,
        connections=CONNECTIONS,
    )
    max_rps = measured.ok_per_second
    count = math.ceil(max(max_rps, 100.0) * duration * TOKEN_MARGIN)
    ctx.say(f"soak: ingest maximum {max_rps:,.0f} votes/s; minting {count:,} readers' tokens")
    tokens = mint(stack, count, stack.dir / "soak-tokens.tsv")
    pids = {
        name: service.process.pid()
        for name, service in (("ingest", ingest), ("aggregator", aggregator), ("reader", reader))
    }
    ctx.say(f"soak: {duration:.0f} s of new readers' votes and page streams")
    result = soak(
        ingest_url=ingest.url,
        reader_url=reader.url,
        processes={name: pid for name, pid in pids.items() if pid is not None},
        tokens=tokens,
        start_line=1,
        duration_s=duration,
        interval_s=interval,
        streams_per_s=STREAMS_PER_S,
        connections=CONNECTIONS,
        # A steady rate, not saturation: ingest's rate rises through a run (its first
        # seconds are its slowest), and the keys its limits hold follow the rate, so only
        # a steady one shows whether memory holds once the window is full.
        votes_per_s=max_rps,
    )
    for part in (reader, aggregator, ingest):
        stack.stop_part(part)
    with contextlib.suppress(OSError):
        tokens.unlink()
    load_end = Path("/proc/loadavg").read_text().split()[0]
    document = result.document(
        window,
        {
            "mode": "quick" if ctx.quick else "full",
            "command": ("BENCH_QUICK=1 " if ctx.quick else "") + "make soak",
            "machine": machine,
            "load_end": load_end,
            "finished_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "measured_max_per_s": max_rps,
            "tokens": count,
        },
    )
    for path in write(document, RESULTS_DIR, "soak-quick" if ctx.quick else "soak"):
        ctx.say(f"soak: wrote {path}")
    add_rows(ctx, document, max_rps)


def add_rows(ctx: Context, document: dict[str, Any], max_rps: float) -> None:
    """The slope of each service's memory against the target, and the load carried."""
    votes, streams = document["votes"], document["streams"]
    for name, summary in document["services"].items():
        slope = summary["slope_mb_per_min"]
        ctx.add(
            Row(
                "soak",
                f"{name} memory growth after the first window",
                "MB/min",
                Figure.of([slope]) if slope is not None else None,
                target=Target("<=", TARGET_MB_PER_MIN, "value"),
                note=f"{summary['start_mb']:.0f} MB at start, {summary['end_mb']:.0f} MB at "
                f"the end, {summary['max_mb']:.0f} MB at most",
            )
        )
    achieved = float(votes["accepted_per_s"])
    ctx.add(
        Row(
            "soak",
            "votes/s, every one by a new reader",
            "votes/s",
            Figure.of([achieved]),
            "ingest maximum measured at the start",
            Figure.of([max_rps]),
            paired_ratios([achieved], [max_rps]),
            note=f"{votes['non2xx']:,} of {votes['requests']:,} not 2xx",
        ),
        Row(
            "soak",
            "page streams opened/s",
            "streams/s",
            Figure.of([streams["opened"] / max(float(streams["seconds"]), 1.0)]),
            note=f"{streams['answered']:,} with tallies, {streams['refused']:,} refused, "
            f"{streams['unanswered']:,} without a tally in their 1–5 s, "
            f"{streams['failed']:,} failed",
        ),
    )
