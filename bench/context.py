"""What every scenario gets: the stack, the run's sizes, the rows collected so far."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench.stack import BenchStack
from bench.stats import Row


@dataclass(frozen=True)
class Sizes:
    """Durations and counts of one run; quick takes about six minutes on 2 cores."""

    rounds: int
    wrk_seconds: float
    e2e_seconds: float
    drain_events: int
    redis_benchmark_commands: int
    memory_events: int
    sse_clients: int
    sse_seconds: float
    settle_seconds: float
    frontpage_seconds: float

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        """Quick: about 6 minutes; full: under 15 (both on a 2-core machine)."""
        if quick:
            return cls(3, 2, 2, 200_000, 50_000, 50_000, 2_000, 5, 5, 8)
        return cls(3, 6, 8, 1_000_000, 500_000, 1_000_000, 10_000, 15, 15, 20)


@dataclass
class Context:
    """Shared state of one `python -m bench run`."""

    stack: BenchStack
    sizes: Sizes
    quick: bool
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)

    def say(self, message: str) -> None:
        """Progress on stderr, with the time since the run began."""
        sys.stderr.write(f"[{time.monotonic() - self.started:6.1f}s] {message}\n")
        sys.stderr.flush()
