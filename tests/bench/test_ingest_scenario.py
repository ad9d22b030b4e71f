"""The ingest scenario's arithmetic: rounds, CPU per accepted vote and cores used."""

from __future__ import annotations

import math

from bench.context import Sizes
from bench.scenarios.ingest import MIN_ROUNDS, Run, rounds_for
from bench.wrk import WrkResult


def _wrk(requests: int, non2xx: int = 0, duration_s: float = 2.0) -> WrkResult:
    return WrkResult(requests, duration_s, non2xx, 0, 1.0, 2.0, 3.0, 4.0)


def test_even_a_quick_run_has_at_least_five_rounds() -> None:
    assert MIN_ROUNDS == 5
    assert rounds_for(Sizes.for_mode(True)) == 5
    assert rounds_for(Sizes.for_mode(False)) >= 5


def test_cpu_is_counted_per_accepted_vote_and_over_the_run() -> None:
    run = Run(_wrk(10_000, non2xx=2_000), cpu_s=1.6, dependency_cpu_s=0.16, load_cpu_s=0.4)
    assert run.accepted == 8_000
    assert math.isclose(run.cpu_us_per_vote, 200.0)
    assert math.isclose(run.per_vote(run.dependency_cpu_s), 20.0)
    assert math.isclose(run.cores_used, 0.8)


def test_a_run_with_nothing_accepted_has_no_cost_per_vote() -> None:
    run = Run(_wrk(100, non2xx=100), cpu_s=1.0)
    assert math.isnan(run.cpu_us_per_vote)
