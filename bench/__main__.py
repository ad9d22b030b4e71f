"""`python -m bench run` (the whole benchmark on its own stack; BENCH_QUICK=1 for the short
version), `python -m bench spike` (the viral-spike latency test against a deployment) and
`python -m bench report FILE.json` (rewrite a run's markdown table and plot) and `python -m
bench profile` (CPU profiles of the services under the bench load, apart from the figures)
and `python -m bench stability A.json B.json` (how far two runs' headline ratios lie apart)."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import uvloop

from bench import profile, report, stability
from bench.context import Context, Sizes
from bench.latency import latency_table, open_loop
from bench.scenarios import drain, e2e, frontpage, ingest, memory, read, soak, sse, trending, verify
from bench.stack import BenchStack, machine_description
from bench.stats import unavailable
from deploy.local.client import TokenFile
from shared.logs import configure_logging

SCENARIOS: dict[str, Callable[[Context], None]] = {
    "ingest": ingest.run,
    "verify": verify.run,
    "read": read.run,
    "frontpage": frontpage.run,
    "e2e": e2e.run,
    "drain": drain.run,
    "sse": sse.run,
    "memory": memory.run,
    "trending": trending.run,
}
# Run only when named (BENCH_ONLY, `make soak`): too long for every `make bench`, and they
# write results of their own rather than latest.*.
ON_REQUEST: dict[str, Callable[[Context], None]] = {"soak": soak.run}


def run(quick: bool, only: list[str]) -> int:
    """Bring up the stack, run the scenarios in order, write the results, stop everything."""
    configure_logging("bench", "WARNING")
    stack = BenchStack()
    ctx = Context(stack, Sizes.for_mode(quick), quick)
    machine = machine_description()
    started_wall = time.monotonic()
    ctx.say(f"stack in {stack.dir}: kafka :{stack.kafka.port}, redis :{stack.redis.port}")
    try:
        stack.start()
        for name, scenario in {**SCENARIOS, **ON_REQUEST}.items():
            if (only or name in ON_REQUEST) and name not in only:
                continue
            ctx.say(f"scenario {name}")
            try:
                scenario(ctx)
            except Exception as exc:  # noqa: BLE001 - one broken scenario must not hide the rest
                traceback.print_exc(file=sys.stderr)
                ctx.add(unavailable(name, "scenario failed", "", repr(exc)[:300]))
    finally:
        stack.stop()
    subset = [name for name in only if name in SCENARIOS]
    command = (
        (f"BENCH_ONLY={','.join(subset)} " if subset else "")
        + ("BENCH_QUICK=1 " if quick else "")
        + "make bench"
    )
    meta = {
        "mode": "quick" if quick else "full",
        "command": command,
        "machine": machine,
        "finished_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": time.monotonic() - started_wall,
        "rounds": ctx.sizes.rounds,
    }
    out = sys.stdout.write
    out("\n" + report.text_table(ctx.rows) + "\n\n")
    if "e2e_table_last_round" in ctx.facts:
        out("end to end, last round:\n" + ctx.facts["e2e_table_last_round"] + "\n\n")
    if subset or not only:
        # A subset never replaces the committed results of a whole run.
        for path in report.write(ctx.rows, meta, name="partial" if subset else "latest"):
            out(f"wrote {path}\n")
    out(f"{meta['mode']} run took {meta['duration_s']:.0f}s on {machine}\n")
    return 0


def spike(args: argparse.Namespace) -> int:
    """Open-loop votes at a fixed rate against a deployment, then the latency table."""
    tokens = list(TokenFile(Path(args.tokens)).tokens.values())
    result = uvloop.run(
        open_loop(
            args.ingest.rstrip("/"),
            args.reader.rstrip("/"),
            tokens=tokens,
            rate=args.rate,
            duration_s=args.duration,
            probe_articles=args.articles,
            method=args.method,
            aggregator_metrics=args.aggregator_metrics,
            settle_timeout_s=args.settle,
        )
    )
    sys.stdout.write(latency_table([("spike", result)]) + "\n")
    how = "SSE stream" if result.method == "sse" else "polling the GET"
    sys.stdout.write(
        f"method: 202 → vote visible via {how}; open loop at {args.rate:g}/s (sends keep "
        "their schedule, so no coordinated omission), one hdrhistogram sample per vote\n"
    )
    return 1 if result.accepted == 0 else 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="the whole benchmark on its own stack")
    run_p.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
        help="short version (default from BENCH_QUICK)",
    )
    run_p.add_argument(
        "--only",
        default=os.environ.get("BENCH_ONLY", ""),
        help=f"comma-separated subset of: {', '.join(SCENARIOS)}; or {', '.join(ON_REQUEST)}, "
        "run only when named",
    )
    report_p = sub.add_parser("report", help="rewrite the .md and .png of a results .json")
    report_p.add_argument("json", help="e.g. bench/results/latest.json")
    stable_p = sub.add_parser(
        "stability", help="how far two runs' headline ratios lie apart (±15 %% expected)"
    )
    stable_p.add_argument("first", help="a run's results .json, e.g. a copy of latest.json")
    stable_p.add_argument("second", help="the next run's results .json")
    profile_p = sub.add_parser("profile", help="CPU profiles and flame graphs under the load")
    profile_p.add_argument(
        "--seconds", type=float, default=float(os.environ.get("PROFILE_SECONDS", "15"))
    )
    profile_p.add_argument(
        "--out", type=Path, default=Path(os.environ.get("PROFILE_OUT", str(profile.DEFAULT_OUT)))
    )
    spike_p = sub.add_parser("spike", help="viral-spike latency against your own deployment")
    spike_p.add_argument("--ingest", required=True, help="ingest base URL")
    spike_p.add_argument("--reader", required=True, help="reader base URL")
    spike_p.add_argument("--rate", type=float, required=True, help="votes per second")
    spike_p.add_argument(
        "--tokens",
        required=True,
        help="readers' tokens, from `python -m services.ingest mint-tokens` with the "
        "deployment's signing key (one reader per vote and article)",
    )
    spike_p.add_argument("--duration", type=float, required=True, help="seconds of load")
    spike_p.add_argument("--articles", type=int, default=1, help="probe articles (1 = one viral)")
    spike_p.add_argument("--method", choices=["auto", "sse", "poll"], default="auto")
    spike_p.add_argument("--aggregator-metrics", help="aggregator /metrics URL for consumer lag")
    spike_p.add_argument(
        "--settle", type=float, default=30.0, help="seconds to wait for stragglers"
    )
    args = parser.parse_args(argv)
    if args.command == "report":
        path = Path(args.json)
        rows, meta = report.load(path)
        for written in report.write(rows, meta, path.parent, path.stem):
            sys.stdout.write(f"wrote {written}\n")
        sys.stdout.write(report.text_table(rows) + "\n")
        return 0
    if args.command == "stability":
        comparisons = stability.compare(
            report.load(Path(args.first))[0], report.load(Path(args.second))[0]
        )
        sys.stdout.write(stability.table(comparisons) + "\n")
        return 0 if all(c.within() is not False for c in comparisons) else 1
    if args.command == "profile":
        if not 2 <= args.seconds <= 300:
            parser.error("--seconds must be 2 to 300")
        return profile.main(args.seconds, args.out)
    if args.command == "spike":
        if args.rate <= 0 or args.duration <= 0 or args.duration * args.rate > 10_000_000:
            parser.error("--rate and --duration must be positive and bounded")
        try:
            return spike(args)
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SCENARIOS) - set(ON_REQUEST)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return run(args.quick, only)


if __name__ == "__main__":
    raise SystemExit(main())
