"""How far two runs' headline ratios lie apart: `python -m bench stability A.json B.json`.

Two consecutive `make bench` runs should give every headline ratio (a row with a target and
a ratio to its same-run baseline) within ±15 % of each other. Each difference is taken
relative to the first run's median ratio; a row measured in one run only is listed as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bench.stats import Row

TOLERANCE: Final = 0.15


@dataclass(frozen=True)
class Comparison:
    """One headline ratio in both runs."""

    scenario: str
    metric: str
    baseline: str
    first: float | None
    second: float | None

    @property
    def change(self) -> float | None:
        """(second − first) / first; None when either run lacks the ratio."""
        if self.first is None or self.second is None or self.first == 0:
            return None
        return (self.second - self.first) / self.first

    def within(self, tolerance: float = TOLERANCE) -> bool | None:
        """Whether the change is within ±tolerance (None when it cannot be told)."""
        change = self.change
        return None if change is None else abs(change) <= tolerance


def _key(row: Row) -> tuple[str, str, str]:
    return (row.scenario, row.metric, row.baseline_name or "")


def _headline_ratio(row: Row) -> bool:
    return row.target is not None and row.target.subject == "ratio"


def compare(first: list[Row], second: list[Row]) -> list[Comparison]:
    """Every headline ratio of either run, in the first run's order, then the second's."""
    ratios: dict[tuple[str, str, str], list[float | None]] = {}
    for index, rows in enumerate((first, second)):
        for row in rows:
            if _headline_ratio(row):
                pair = ratios.setdefault(_key(row), [None, None])
                pair[index] = row.ratio.median if row.ratio is not None else None
    return [Comparison(*key, *pair) for key, pair in ratios.items()]


def table(comparisons: list[Comparison], tolerance: float = TOLERANCE) -> str:
    """One line per ratio: both medians, the change and whether it is within tolerance."""
    lines = [f"{'scenario / metric / baseline':<70} {'first':>7} {'second':>7} {'change':>8}"]
    for c in comparisons:
        name = f"{c.scenario} / {c.metric} / {c.baseline}"[:70]
        first = f"{c.first:.2f}" if c.first is not None else "n/a"
        second = f"{c.second:.2f}" if c.second is not None else "n/a"
        change = f"{c.change:+.0%}" if c.change is not None else "n/a"
        verdict = {True: "ok", False: f"OUTSIDE ±{tolerance:.0%}", None: "one run only"}[
            c.within(tolerance)
        ]
        lines.append(f"{name:<70} {first:>7} {second:>7} {change:>8}  {verdict}")
    return "\n".join(lines)
