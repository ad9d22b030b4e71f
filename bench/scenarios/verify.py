"""What token verification costs ingest: the service against the same build whose verifier
trusts each token's `sub` unchecked (bench/baselines/unverified_ingest.py), in alternating
rounds, as process CPU time per accepted vote (from /proc: the steadier figure on a shared
machine) and as votes/s at saturation.

Three pools of readers. Realistic: 10,000 returning readers voting 3 times each with the
tokens they kept, a reader's three votes within 300 consecutive ones, so one vote in three
pays a signature check and the verified-token cache serves the others, as readers voting on
a few articles make it. Worst case: every vote a token never seen. Each round walks a part
of each pool no earlier run used, so no round finds the readers of another in the cache.
New readers: each asks ingest for a token (`POST /v1/readers`), then votes 3 times with
it; ingest remembers the tokens it signs, so none of these votes pays a check, and the
CPU of the issuance counts in both builds' figures."""

from __future__ import annotations

import random
from pathlib import Path

from bench.context import Context
from bench.pinning import tree_cpu_seconds
from bench.stack import AppProcess, BenchStack
from bench.stats import Figure, Row, Target, paired_ratios
from bench.wrk import run_wrk
from deploy.local.services import Service
from services.ingest.tokens import IssuedToken, minted, write_tokens

CONNECTIONS = 32
POOL_READERS = 10_000
VOTES_PER_READER = 3
# Readers enter in blocks; each block's readers vote once in each of three shuffled passes.
BLOCK = 100
# A run's votes stay in its round's part of a pool up to this rate (more than this machine
# reaches); a faster one would find the next round's readers already verified.
MOST_VOTES_PER_S = 3_000
TARGET_OVERHEAD = 1.10


def realistic_pool(stack: BenchStack, readers_count: int, path: Path) -> Path:
    """`readers_count` readers, each appearing VOTES_PER_READER times, blocks of BLOCK
    readers each voting once per shuffled pass."""
    rng = random.Random(5)
    readers = list(minted(stack.keys.issuer(), readers_count, "a.pool-", None))
    lines: list[IssuedToken] = []
    for start in range(0, len(readers), BLOCK):
        block = readers[start : start + BLOCK]
        for _ in range(VOTES_PER_READER):
            lines += rng.sample(block, len(block))
    write_tokens(iter(lines), path)
    return path


def single_use_pool(stack: BenchStack, count: int, path: Path) -> Path:
    """`count` readers, each voting once."""
    write_tokens(minted(stack.keys.issuer(), count, "a.once-", None), path)
    return path


def measure(
    target: Service | AppProcess, script: str, args: list[str], seconds: float, votes_share: float
) -> tuple[float, float]:
    """(votes accepted/s, CPU µs per accepted vote) of one saturation run whose answered
    requests are votes in the share `votes_share` (the rest new readers' tokens)."""
    pid = target.process.pid()
    before = tree_cpu_seconds(pid)
    result = run_wrk(target.url, script, args, duration_s=seconds, connections=CONNECTIONS)
    used = tree_cpu_seconds(pid) - before
    accepted = (result.requests - result.non2xx) * votes_share
    per_s = result.ok_per_second * votes_share
    return per_s, (used / accepted * 1e6 if accepted else float("nan"))


def run(ctx: Context) -> None:
    """Ingest and the unverified build, each pool, round by round."""
    stack = ctx.stack
    rounds = ctx.sizes.rounds
    seconds = ctx.sizes.wrk_seconds
    segment = round(seconds * MOST_VOTES_PER_S)
    readers = max(POOL_READERS, rounds * segment // VOTES_PER_READER)
    pools = {
        "realistic": realistic_pool(stack, readers, stack.dir / "verify-pool.tsv"),
        "worst": single_use_pool(stack, rounds * segment, stack.dir / "verify-once.tsv"),
    }
    # Each round starts where no earlier run went.
    step = {"realistic": readers * VOTES_PER_READER // rounds, "worst": segment}
    ctx.say("verify: starting ingest and the same build without token verification")
    ingest = stack.start_service("ingest")
    unverified = stack.start_app("unverified_ingest", stack.service_env())
    warm = str(stack.tokens_file())
    for target in (ingest, unverified):
        run_wrk(target.url, "put", [warm, "100", "bench-warm"], duration_s=1, connections=4)
    rps: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    newcomers = [str(VOTES_PER_READER), "10000", "bench-v"]
    for r in range(rounds):
        runs = {
            pool: ("walk", [str(path), str(1 + r * step[pool]), "10000", "bench-v"], 1.0)
            for pool, path in pools.items()
        }
        runs["new"] = ("newcomers", newcomers, VOTES_PER_READER / (VOTES_PER_READER + 1))
        for pool, (script, args, votes_share) in runs.items():
            for side, target in (("ingest", ingest), ("unverified", unverified)):
                per_s, us = measure(target, script, args, seconds, votes_share)
                rps.setdefault((pool, side), []).append(per_s)
                cpu.setdefault((pool, side), []).append(us)
        ctx.say(
            f"verify round {r + 1}: "
            + ", ".join(f"{p} {s} {cpu[p, s][-1]:.0f} µs/vote" for p, s in cpu)
        )
    for target in (ingest, unverified):
        stack.stop_part(target)

    names = {
        "realistic": f"{readers:,} readers voting {VOTES_PER_READER} times",
        "worst": "every vote a new token",
        "new": f"new readers, a token from ingest then {VOTES_PER_READER} votes",
    }
    for pool, name in names.items():
        with_, without = cpu[pool, "ingest"], cpu[pool, "unverified"]
        extra = Figure.of([a - b for a, b in zip(with_, without, strict=True)])
        ctx.add(
            Row(
                "verify",
                f"CPU per vote, {name}",
                "µs",
                Figure.of(with_),
                "same build, token unchecked",
                Figure.of(without),
                paired_ratios(with_, without),
                Target("<=", TARGET_OVERHEAD) if pool == "realistic" else None,
                f"verification adds {extra.median:.0f} [{extra.min:.0f}–{extra.max:.0f}] µs "
                "of process CPU per accepted vote"
                + ("; each reader's token issuance counted in both" if pool == "new" else ""),
            ),
            Row(
                "verify",
                f"votes/s, {name}",
                "req/s",
                Figure.of(rps[pool, "ingest"]),
                "same build, token unchecked",
                Figure.of(rps[pool, "unverified"]),
                paired_ratios(rps[pool, "ingest"], rps[pool, "unverified"]),
                note=f"wrk -t1 -c{CONNECTIONS}, {seconds:g}s per run, 2xx only",
            ),
        )
