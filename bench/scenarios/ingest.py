"""Ingest at saturation (wrk, random articles and readers, each reader with its token)
against the bare HTTP ceiling and the naive Redis-per-request peer, measured in alternating
rounds."""

from __future__ import annotations

from bench.context import Context
from bench.stack import AppProcess, child_pids
from bench.stats import Figure, Row, Target, paired_ratios, unavailable
from bench.wrk import WrkResult, run_wrk
from deploy.local.services import Service

CONNECTIONS = 32


def put(url: str, ctx: Context) -> WrkResult:
    """One saturation run of random votes."""
    return run_wrk(
        url,
        "put",
        [str(ctx.stack.tokens_file()), "10000", "bench-a"],
        duration_s=ctx.sizes.wrk_seconds,
        connections=CONNECTIONS,
    )


def warm_up(url: str, ctx: Context) -> None:
    """One short run so connection set-up and first-call costs stay out of the rounds."""
    tokens = str(ctx.stack.tokens_file())
    run_wrk(url, "put", [tokens, "100", "bench-warm"], duration_s=1, connections=4)


def run(ctx: Context) -> None:
    """Ingest with 1 and 2 workers, the bare endpoint and the naive peer, round by round."""
    stack = ctx.stack
    ctx.say("ingest: starting ingest (1 worker), bare endpoint, naive peer")
    ingest1, ingest2 = stack.start_services(("ingest", {}), ("ingest", {"REACTIONS_WORKERS": "2"}))
    naive_env = {
        "BENCH_REDIS_URL": stack.redis_url(3),
        "BENCH_JWKS": str(stack.keys.public_keys_file),
    }
    bare, naive = stack.start_apps(("bare_ingest", {}), ("naive_redis", naive_env))
    targets: dict[str, Service | AppProcess] = {"ingest": ingest1, "bare": bare, "naive": naive}
    pid = ingest2.process.pid()
    two_workers = pid is not None and len(child_pids(pid)) >= 2
    if two_workers:
        targets["ingest2"] = ingest2
    else:
        stack.stop_part(ingest2)
    results: dict[str, list[WrkResult]] = {name: [] for name in targets}
    for target in targets.values():
        warm_up(target.url, ctx)
    for r in range(ctx.sizes.rounds):
        for name, target in targets.items():
            results[name].append(put(target.url, ctx))
        ctx.say(
            f"ingest round {r + 1}: "
            + ", ".join(f"{n} {res[-1].ok_per_second:,.0f}/s" for n, res in results.items())
        )
    for target in targets.values():
        stack.stop_part(target)

    rps = {n: [x.ok_per_second for x in res] for n, res in results.items()}
    p50 = {n: [x.p50_ms for x in res] for n, res in results.items()}
    p99 = {n: [x.p99_ms for x in res] for n, res in results.items()}
    errors = {n: max(x.error_share for x in res) for n, res in results.items()}
    ctx.facts["ingest_max_rps"] = Figure.of(rps["ingest"]).median
    note = f"wrk -t1 -c{CONNECTIONS}, {ctx.sizes.wrk_seconds:g}s per run, 2xx only"
    if errors["ingest"] > 0.01:
        note += f"; {errors['ingest']:.1%} of ingest answers were not 2xx"
    ctx.add(
        Row(
            "ingest",
            "vote req/s, 1 worker",
            "req/s",
            Figure.of(rps["ingest"]),
            "bare FastAPI 202",
            Figure.of(rps["bare"]),
            paired_ratios(rps["ingest"], rps["bare"]),
            Target(">=", 0.8),
            note,
        ),
        Row(
            "ingest",
            "vote req/s, 1 worker",
            "req/s",
            Figure.of(rps["ingest"]),
            "naive Redis per request",
            Figure.of(rps["naive"]),
            paired_ratios(rps["ingest"], rps["naive"]),
            Target(">=", 1.0),
            note,
        ),
        Row(
            "ingest",
            "vote p50 at saturation",
            "ms",
            Figure.of(p50["ingest"]),
            "bare FastAPI 202",
            Figure.of(p50["bare"]),
            paired_ratios(p50["ingest"], p50["bare"]),
        ),
        Row(
            "ingest",
            "vote p99 at saturation",
            "ms",
            Figure.of(p99["ingest"]),
            "bare FastAPI 202",
            Figure.of(p99["bare"]),
            paired_ratios(p99["ingest"], p99["bare"]),
        ),
    )
    if two_workers:
        ctx.add(
            Row(
                "ingest",
                "vote req/s, 2 workers",
                "req/s",
                Figure.of(rps["ingest2"]),
                "ingest, 1 worker",
                Figure.of(rps["ingest"]),
                paired_ratios(rps["ingest2"], rps["ingest"]),
                note=note,
            )
        )
    else:
        ctx.add(
            unavailable(
                "ingest",
                "vote req/s, 2 workers",
                "req/s",
                "ingest ran one process with REACTIONS_WORKERS=2",
                baseline_name="ingest, 1 worker",
            )
        )
