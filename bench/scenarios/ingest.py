"""Ingest at saturation (wrk, random articles and readers, each reader with its token)
against the bare HTTP ceiling and the naive Redis-per-request peer, measured in alternating
rounds.

Pinned, so that the comparison is fair on two shared cores: the service under test (ingest,
the bare endpoint, the naive peer alike) on one core, its dependency (Kafka or Redis) and
the load generator on the other. Each run also reports the process CPU time per accepted
vote (from /proc), the steadier figure when other work shares the machine.

Two workers cannot beat one on one core, so workers are compared unpinned: one worker and
two, each with Kafka and wrk on the same two cores."""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

from bench.context import Context, Sizes
from bench.pinning import cores, pin, split_cores, tree_cpu_seconds
from bench.stack import BENCH_READERS, AppProcess, BenchStack, child_pids
from bench.stats import Figure, Row, Target, paired_ratios, unavailable
from bench.wrk import WrkResult, run_wrk
from deploy.local.services import Service

# Enough open connections that each service's core, not the round trips to its dependency,
# is what limits it: ingest waits for Kafka's acknowledgement (about 10 ms a batch here), so
# with 32 it idled half the time while the bare endpoint was busy. The same for every
# service; the core each one used is reported, to show that it was saturated.
CONNECTIONS = 128
# How long one run of the cache fill lasts, and how many runs a worker gets: each run
# continues the walk where the last one stopped, until every reader has voted once per
# worker.
FILL_SECONDS = 8
FILL_RUNS_MAX = 2
# Rounds at least: on a shared two-core machine one round in three can be an outlier.
MIN_ROUNDS = 5


@dataclass(frozen=True)
class Run:
    """One saturation run: wrk's view and the CPU time used meanwhile by the service's
    processes, by its dependency (Kafka or Redis) and by wrk."""

    wrk: WrkResult
    cpu_s: float
    dependency_cpu_s: float = 0.0
    load_cpu_s: float = 0.0

    @property
    def accepted(self) -> int:
        return self.wrk.requests - self.wrk.non2xx

    def per_vote(self, cpu_s: float) -> float:
        """µs of `cpu_s` per accepted vote."""
        return cpu_s / self.accepted * 1e6 if self.accepted else float("nan")

    @property
    def cpu_us_per_vote(self) -> float:
        return self.per_vote(self.cpu_s)

    @property
    def cores_used(self) -> float:
        """The service's CPU time over the run's length: 1.0 is one core kept busy."""
        return self.cpu_s / self.wrk.duration_s if self.wrk.duration_s else float("nan")


def rounds_for(sizes: Sizes) -> int:
    """The run's rounds, but at least MIN_ROUNDS: the median of 5 shrugs off one outlier."""
    return max(sizes.rounds, MIN_ROUNDS)


def put(
    target: Service | AppProcess,
    ctx: Context,
    load_cores: set[int] | None,
    dependency: int | None = None,
) -> Run:
    """One saturation run of random votes, with the CPU time of the target, of its
    dependency (the process `dependency`) and of wrk over it."""
    pid = target.process.pid()
    before = tree_cpu_seconds(pid)
    dependency_before = tree_cpu_seconds(dependency)
    load_before = children_cpu_seconds()
    result = run_wrk(
        target.url,
        "put",
        [str(ctx.stack.tokens_file()), "10000", "bench-a"],
        duration_s=ctx.sizes.wrk_seconds,
        connections=CONNECTIONS,
        cores=load_cores,
    )
    return Run(
        result,
        tree_cpu_seconds(pid) - before,
        tree_cpu_seconds(dependency) - dependency_before,
        children_cpu_seconds() - load_before,
    )


def children_cpu_seconds() -> float:
    """CPU time of this process's finished children (wrk runs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def warm_up(url: str, tokens_file: Path) -> None:
    """One short run so connection set-up and first-call costs stay out of the rounds."""
    run_wrk(url, "put", [str(tokens_file), "100", "bench-warm"], duration_s=1, connections=4)


def fill_token_cache(url: str, tokens_file: Path, workers: int = 1) -> None:
    """Every bench reader votes once, in the file's order, so ingest's cache of verified
    tokens holds as many as it can before the rounds: the rounds then see the steady state
    of a crowd larger than the cache (a third of the votes pay a signature check), not
    a cold start that warms from one round to the next. Each worker keeps a cache of its
    own and gets a share of the votes: one pass of the readers per worker."""
    tokens = str(tokens_file)
    sent = 0
    for _ in range(FILL_RUNS_MAX * workers):
        result = run_wrk(
            url,
            "walk",
            [tokens, str(sent % BENCH_READERS + 1), "100", "bench-warm"],
            duration_s=FILL_SECONDS,
            connections=CONNECTIONS,
        )
        sent += result.requests
        if sent >= BENCH_READERS * workers:
            return


def pin_layout(
    stack: BenchStack, services: list[Service | AppProcess], layout: tuple[set[int], set[int]]
) -> None:
    """The services under test on the first set of cores, Kafka and Redis on the second."""
    service_cores, other = layout
    for dependency in (stack.kafka.process.pid(), stack.redis.process.pid()):
        pin(dependency, other)
    for service in services:
        pin(service.process.pid(), service_cores)


def unpin(stack: BenchStack, services: list[Service | AppProcess]) -> None:
    """Every part back on every core."""
    everywhere = set(cores())
    for pid in (stack.kafka.process.pid(), stack.redis.process.pid()):
        pin(pid, everywhere)
    for service in services:
        pin(service.process.pid(), everywhere)


def run(ctx: Context) -> None:
    """Pinned: ingest (1 worker), the bare endpoint and the naive peer, round by round; then
    unpinned: ingest with 1 and 2 workers, round by round."""
    stack = ctx.stack
    rounds = rounds_for(ctx.sizes)
    ctx.say("ingest: starting ingest (1 and 2 workers), bare endpoint, naive peer")
    ingest1, ingest2 = stack.start_services(("ingest", {}), ("ingest", {"REACTIONS_WORKERS": "2"}))
    naive_env = {
        "BENCH_REDIS_URL": stack.redis_url(3),
        "BENCH_JWKS": str(stack.keys.public_keys_file),
    }
    bare, naive = stack.start_apps(("bare_ingest", {}), ("naive_redis", naive_env))
    targets: dict[str, Service | AppProcess] = {"ingest": ingest1, "bare": bare, "naive": naive}
    pid = ingest2.process.pid()
    two_workers = pid is not None and len(child_pids(pid)) >= 2
    if not two_workers:
        stack.stop_part(ingest2)
    tokens = stack.tokens_file()
    for target in (*targets.values(), *([ingest2] if two_workers else [])):
        warm_up(target.url, tokens)
    fill_token_cache(ingest1.url, tokens)
    if two_workers:
        fill_token_cache(ingest2.url, tokens, workers=2)

    layout = split_cores()
    load_cores = layout[1] if layout else None
    if layout:
        pin_layout(stack, list(targets.values()), layout)
    pinned: dict[str, list[Run]] = {name: [] for name in targets}
    dependencies = {"ingest": stack.kafka.process.pid(), "naive": stack.redis.process.pid()}
    try:
        for r in range(rounds):
            for name, target in targets.items():
                pinned[name].append(put(target, ctx, load_cores, dependencies.get(name)))
            ctx.say(
                f"ingest round {r + 1} (pinned): "
                + ", ".join(
                    f"{n} {x[-1].wrk.ok_per_second:,.0f}/s {x[-1].cpu_us_per_vote:,.0f} µs "
                    f"{x[-1].cores_used:.2f} cores"
                    for n, x in pinned.items()
                )
            )
    finally:
        unpin(stack, list(targets.values()))
    for name in ("bare", "naive"):
        stack.stop_part(targets[name])

    workers: dict[str, list[Run]] = {"1": [], "2": []}
    if two_workers:
        kafka = stack.kafka.process.pid()
        for r in range(rounds):
            workers["1"].append(put(ingest1, ctx, None, kafka))
            workers["2"].append(put(ingest2, ctx, None, kafka))
            ctx.say(
                f"ingest round {r + 1} (unpinned): 1 worker "
                f"{workers['1'][-1].wrk.ok_per_second:,.0f}/s, 2 workers "
                f"{workers['2'][-1].wrk.ok_per_second:,.0f}/s"
            )
        stack.stop_part(ingest2)
    stack.stop_part(ingest1)
    ctx.facts["ingest_max_rps"] = Figure.of([x.wrk.ok_per_second for x in pinned["ingest"]]).median
    ctx.add(*pinned_rows(ctx, pinned, layout is not None), *worker_rows(ctx, workers, two_workers))


BASELINES = (("bare", "bare FastAPI 202"), ("naive", "naive Redis per request"))


def against_baselines(
    metric: str,
    unit: str,
    values: dict[str, list[float]],
    note: str,
    targets: dict[str, Target] | None = None,
) -> list[Row]:
    """One row per baseline: ingest's figure, the baseline's, their ratio round by round."""
    return [
        Row(
            "ingest",
            metric,
            unit,
            Figure.of(values["ingest"]),
            name,
            Figure.of(values[base]),
            paired_ratios(values["ingest"], values[base]),
            (targets or {}).get(base),
            note,
        )
        for base, name in BASELINES
    ]


def pinned_rows(ctx: Context, runs: dict[str, list[Run]], pinned: bool) -> list[Row]:
    """Throughput, CPU per vote and latency of ingest against the bare endpoint and the
    naive peer."""
    rps = {n: [x.wrk.ok_per_second for x in res] for n, res in runs.items()}
    cpu = {n: [x.cpu_us_per_vote for x in res] for n, res in runs.items()}
    p50 = {n: [x.wrk.p50_ms for x in res] for n, res in runs.items()}
    p99 = {n: [x.wrk.p99_ms for x in res] for n, res in runs.items()}
    errors = max(x.wrk.error_share for x in runs["ingest"])
    where = (
        "each service on core 0, Kafka/Redis and wrk on core 1 (taskset)"
        if pinned
        else "one core: not pinned"
    )
    note = f"wrk -t1 -c{CONNECTIONS}, {ctx.sizes.wrk_seconds:g}s per run, 2xx only; {where}"
    if errors > 0.01:
        note += f"; {errors:.1%} of ingest answers were not 2xx"
    cpu_note = (
        "process CPU time (/proc) per accepted vote, the service's own process only (Kafka's "
        "or Redis's work not counted, for ingest and the naive peer alike)"
    )
    used = {n: [x.cores_used for x in res] for n, res in runs.items()}
    rows = [
        *against_baselines(
            "vote req/s, 1 worker, pinned",
            "req/s",
            rps,
            note,
            {"bare": Target(">=", 0.5), "naive": Target(">=", 1.0)},
        ),
        *against_baselines(
            "CPU per accepted vote, 1 worker",
            "µs",
            cpu,
            cpu_note,
            {"naive": Target("<=", 1.0)},
        ),
        *against_baselines(
            "cores used by the service, 1 worker, pinned",
            "cores",
            used,
            "process CPU time over the run's length: near 1.0, the service's core was what "
            "limited it (saturation)",
        ),
    ]
    kafka = [x.per_vote(x.dependency_cpu_s) for x in runs["ingest"]]
    redis = [x.per_vote(x.dependency_cpu_s) for x in runs["naive"]]
    rows += [
        Row(
            "ingest",
            "Kafka CPU per accepted vote",
            "µs",
            Figure.of(kafka),
            "Redis, naive peer",
            Figure.of(redis),
            paired_ratios(kafka, redis),
            note="the dependency's process CPU time per accepted vote, on the other core",
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
    ]
    return rows


def worker_rows(ctx: Context, runs: dict[str, list[Run]], measured: bool) -> list[Row]:
    """Two workers against one, both unpinned with Kafka and wrk on the same cores."""
    metric = "vote req/s, 2 workers, unpinned"
    if not measured:
        return [
            unavailable(
                "ingest",
                metric,
                "req/s",
                "ingest ran one process with REACTIONS_WORKERS=2",
                baseline_name="ingest, 1 worker",
            )
        ]
    two = [x.wrk.ok_per_second for x in runs["2"]]
    one = [x.wrk.ok_per_second for x in runs["1"]]
    cpu_two = [x.cpu_us_per_vote for x in runs["2"]]
    cpu_one = [x.cpu_us_per_vote for x in runs["1"]]
    kafka_two = [x.per_vote(x.dependency_cpu_s) for x in runs["2"]]
    kafka_one = [x.per_vote(x.dependency_cpu_s) for x in runs["1"]]
    wrk_two = [x.per_vote(x.load_cpu_s) for x in runs["2"]]
    wrk_one = [x.per_vote(x.load_cpu_s) for x in runs["1"]]
    note = (
        f"wrk -t1 -c{CONNECTIONS}, {ctx.sizes.wrk_seconds:g}s per run, 2xx only; nothing "
        "pinned: the workers, Kafka and wrk share both cores"
    )
    return [
        Row(
            "ingest",
            metric,
            "req/s",
            Figure.of(two),
            "ingest, 1 worker, unpinned",
            Figure.of(one),
            paired_ratios(two, one),
            Target(">=", 1.0),
            note,
        ),
        Row(
            "ingest",
            "CPU per accepted vote, 2 workers",
            "µs",
            Figure.of(cpu_two),
            "ingest, 1 worker, unpinned",
            Figure.of(cpu_one),
            paired_ratios(cpu_two, cpu_one),
            note="process CPU time (/proc) of all workers per accepted vote",
        ),
        Row(
            "ingest",
            "Kafka CPU per accepted vote, 2 workers",
            "µs",
            Figure.of(kafka_two),
            "Kafka, ingest with 1 worker",
            Figure.of(kafka_one),
            paired_ratios(kafka_two, kafka_one),
            note="the broker's process CPU time per accepted vote",
        ),
        Row(
            "ingest",
            "wrk CPU per accepted vote, 2 workers",
            "µs",
            Figure.of(wrk_two),
            "wrk, ingest with 1 worker",
            Figure.of(wrk_one),
            paired_ratios(wrk_two, wrk_one),
            note="the load generator's CPU time per accepted vote",
        ),
    ]
