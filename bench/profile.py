"""`python -m bench profile` (`make profile`): where the CPU goes in ingest, the aggregator and
the reader under the bench's load, sampled with py-spy, as flame graphs and a table of the
top costs per request (per event for the aggregator).

Kept apart from `make bench`: a sampling profiler stops the process it samples many times
a second, which would skew the figures. Two phases on one stack: votes at saturation
(`wrk`, as the ingest scenario sends them) while ingest and the aggregator are sampled,
then reads of the tallies those votes made (uniform over 10,000 articles, as the read
scenario) while the reader is sampled."""

from __future__ import annotations

import datetime
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench import flame
from bench.pinning import tree_cpu_seconds
from bench.scenarios.ingest import fill_token_cache, warm_up
from bench.stack import BenchStack, fetch_text, machine_description
from bench.wrk import run_wrk
from deploy.local.services import Service
from shared.logs import configure_logging

DEFAULT_OUT: Final = Path("bench/results/profiles")
# Samples a second per process: enough for a 1 % frame to show, little enough not to
# slow the process sampled by more than a few percent.
RATE_HZ: Final = 250
TOP: Final = 12
TOP_INCLUSIVE: Final = 24
ARTICLES: Final = 10_000


@dataclass(frozen=True)
class Profiled:
    """One process's samples over one window, and the work it did meanwhile."""

    name: str
    stacks: Counter[tuple[str, ...]]
    cpu_s: float
    units: int
    unit: str  # "request" or "event"

    @property
    def cpu_us_per_unit(self) -> float:
        return self.cpu_s / self.units * 1e6 if self.units else float("nan")


def py_spy() -> str:
    """The py-spy executable (a dev dependency, beside this Python)."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed: pip install -e '.[dev]'")
    return found


def start_sampling(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` (and its workers) for `seconds` into a raw stacks file."""
    return subprocess.Popen(
        [
            py_spy(),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(round(seconds)),
            "--rate",
            str(RATE_HZ),
            "--format",
            "raw",
            "--function",  # one frame per function, not per line
            "--subprocesses",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish_sampling(recorder: subprocess.Popen[bytes], out: Path) -> Counter[tuple[str, ...]]:
    """Wait for py-spy and read its stacks."""
    _, err = recorder.communicate(timeout=120)
    if recorder.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({recorder.returncode}): {err.decode()[-500:]}")
    return flame.read_collapsed(out)


def metric_total(metrics_url: str, name: str, **labels: str) -> float:
    """The sum of a metric's series (those with `labels`) on a /metrics page; 0 if absent."""
    text = fetch_text(metrics_url) or ""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in text.splitlines():
        series = line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " ")
        if series and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def profile(seconds: float) -> list[Profiled]:
    """Bring up a stack, load it in two phases while sampling, return the profiles."""
    stack = BenchStack()
    profiles: list[Profiled] = []
    try:
        stack.start()
        ingest, aggregator, reader = stack.start_services(
            ("ingest", {}), ("aggregator", {}), ("reader", {})
        )
        tokens_file = stack.tokens_file()
        tokens = str(tokens_file)
        # As the ingest scenario does: warmed up, the verified-token cache in its steady state.
        warm_up(ingest.url, tokens_file)
        fill_token_cache(ingest.url, tokens_file)
        events_url = f"{aggregator.url}/metrics"
        events_before = metric_total(events_url, "reactions_aggregator_events_total")
        sampled: dict[str, tuple[Counter[tuple[str, ...]], float]] = {}
        started = time.monotonic()
        # The load runs in a thread of its own process (wrk); py-spy samples alongside.
        recorders = {
            name: start_sampling(_pid(service), seconds, stack.dir / f"{name}.txt")
            for name, service in (("ingest", ingest), ("aggregator", aggregator))
        }
        cpu_before = {
            "ingest": tree_cpu_seconds(ingest.process.pid()),
            "aggregator": tree_cpu_seconds(aggregator.process.pid()),
        }
        votes = run_wrk(ingest.url, "put", [tokens, str(ARTICLES), "bench-a"], duration_s=seconds)
        for name, recorder in recorders.items():
            stacks = finish_sampling(recorder, stack.dir / f"{name}.txt")
            service = ingest if name == "ingest" else aggregator
            sampled[name] = (stacks, tree_cpu_seconds(service.process.pid()) - cpu_before[name])
        events = metric_total(events_url, "reactions_aggregator_events_total") - events_before
        accepted = votes.requests - votes.non2xx
        profiles.append(Profiled("ingest", *sampled["ingest"], accepted, "request"))
        profiles.append(Profiled("aggregator", *sampled["aggregator"], int(events), "event"))
        sys.stderr.write(
            f"votes: {votes.ok_per_second:,.0f}/s for {time.monotonic() - started:.0f}s, "
            f"{int(events):,} events applied\n"
        )

        recorder = start_sampling(_pid(reader), seconds, stack.dir / "reader.txt")
        cpu = tree_cpu_seconds(reader.process.pid())
        reads = run_wrk(reader.url, "get_tally", [str(ARTICLES), "bench-a"], duration_s=seconds)
        stacks = finish_sampling(recorder, stack.dir / "reader.txt")
        used = tree_cpu_seconds(reader.process.pid()) - cpu
        profiles.append(Profiled("reader", stacks, used, reads.requests - reads.non2xx, "request"))
        sys.stderr.write(f"reads: {reads.ok_per_second:,.0f}/s\n")
    finally:
        stack.stop()
    return profiles


def _pid(service: Service) -> int:
    pid = service.process.pid()
    if pid is None:
        raise RuntimeError(f"{service.name} is not running")
    return pid


def summary(profiles: list[Profiled], seconds: float, command: str) -> str:
    """The top costs of each process as markdown: µs of CPU per request (or event)."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# CPU profiles under the bench load",
        "",
        f"`{command}` at {when} on {machine_description()}; {seconds:g} s per phase, "
        f"py-spy at {RATE_HZ} samples/s (`--function`: one frame per function). A cost is "
        "the process CPU time per request (or event) from /proc, shared out by the samples: "
        "self is time in the function itself, inclusive adds what it calls.",
        "",
    ]
    for p in profiles:
        costs = flame.Costs.of(p.stacks)
        per = p.cpu_us_per_unit
        lines += [
            f"## {p.name}: {per:,.0f} µs of CPU per {p.unit}",
            "",
            f"{p.units:,} {p.unit}s, {p.cpu_s:.2f} CPU-s, {costs.total:,} samples; "
            f"flame graph [`{p.name}.svg`]({p.name}.svg).",
            "",
            f"| by library (self) | µs per {p.unit} | share |",
            "|---|---|---|",
        ]
        for lib, n in costs.self_by_library.most_common(TOP):
            lines.append(f"| {lib} | {per * costs.share(n):,.1f} | {costs.share(n):.1%} |")
        lines += ["", f"| function (inclusive) | µs per {p.unit} | share |", "|---|---|---|"]
        for fn, n in _informative(costs).most_common(TOP_INCLUSIVE):
            lines.append(f"| `{fn}` | {per * costs.share(n):,.1f} | {costs.share(n):.1%} |")
        lines += ["", f"| function (self) | µs per {p.unit} | share |", "|---|---|---|"]
        for fn, n in costs.self_by_function.most_common(TOP):
            lines.append(f"| `{fn}` | {per * costs.share(n):,.1f} | {costs.share(n):.1%} |")
        lines.append("")
    return "\n".join(lines)


def _informative(costs: flame.Costs) -> Counter[str]:
    """Inclusive costs without the frames every sample passes through (the event loop, the
    server's run): they say nothing about where the time goes."""
    return Counter({fn: n for fn, n in costs.inclusive_by_function.items() if costs.share(n) < 0.9})


def main(seconds: float, out: Path) -> int:
    """Profile, then write `<name>.svg` per process and `summary.md` into `out`."""
    configure_logging("bench", "WARNING")
    profiles = profile(seconds)
    out.mkdir(parents=True, exist_ok=True)
    for p in profiles:
        samples = sum(p.stacks.values())
        title = f"{p.name}: {p.cpu_us_per_unit:,.0f} µs CPU per {p.unit} ({samples:,} samples)"
        (out / f"{p.name}.svg").write_text(flame.svg(p.stacks, title))
        # The samples themselves, for a closer look (`flame.read_collapsed`); not committed.
        (out / f"{p.name}.stacks").write_text(
            "".join(f"{';'.join(stack)} {n}\n" for stack, n in p.stacks.items())
        )
    command = "make profile" + ("" if out == DEFAULT_OUT else f" PROFILE_OUT={out}")
    (out / "summary.md").write_text(summary(profiles, seconds, command))
    sys.stdout.write((out / "summary.md").read_text())
    return 0
