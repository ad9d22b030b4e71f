"""Figures and result rows: every figure is the median of repeated runs, with min and max,
and is compared with a baseline measured in the same rounds."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Figure:
    """Repeated measurements of one quantity: median, min and max of the runs."""

    runs: tuple[float, ...]

    @classmethod
    def of(cls, runs: list[float] | tuple[float, ...]) -> Figure:
        """A figure from the values of its runs (at least one)."""
        if not runs:
            raise ValueError("a figure needs at least one run")
        return cls(tuple(float(r) for r in runs))

    @property
    def median(self) -> float:
        return float(statistics.median(self.runs))

    @property
    def min(self) -> float:
        return min(self.runs)

    @property
    def max(self) -> float:
        return max(self.runs)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Figure | None:
        return cls.of(data["runs"]) if data else None

    def to_json(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "runs": list(self.runs),
        }


def paired_ratios(values: list[float], baselines: list[float]) -> Figure | None:
    """Per-round ratio value/baseline (rounds ran back to back), or None if any baseline is 0."""
    if not values or len(values) != len(baselines) or any(b == 0 for b in baselines):
        return None
    return Figure.of([v / b for v, b in zip(values, baselines, strict=True)])


@dataclass(frozen=True)
class Target:
    """What to chase: `subject` ("ratio" or "value") compared with `bound` by `op`."""

    op: Literal[">=", "<="]
    bound: float
    subject: Literal["ratio", "value"] = "ratio"

    def met(self, value: float | None) -> bool | None:
        """True/False when the subject was measured, None when it was not."""
        if value is None:
            return None
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def describe(self, unit: str = "") -> str:
        suffix = "×" if self.subject == "ratio" else (f" {unit}" if unit else "")
        return f"{self.op} {_num(self.bound)}{suffix}"


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    metric: str
    unit: str
    value: Figure | None = None
    baseline_name: str | None = None
    baseline: Figure | None = None
    ratio: Figure | None = None
    target: Target | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.value is not None

    def target_met(self) -> bool | None:
        """Whether the median meets the target (None without target or measurement)."""
        if self.target is None:
            return None
        figure = self.ratio if self.target.subject == "ratio" else self.value
        return self.target.met(figure.median if figure is not None else None)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Row:
        """A row as written to latest.json."""
        target = data.get("target")
        return cls(
            data["scenario"],
            data["metric"],
            data["unit"],
            Figure.from_json(data.get("value")),
            data.get("baseline_name"),
            Figure.from_json(data.get("baseline")),
            Figure.from_json(data.get("ratio")),
            Target(**target) if target else None,
            data.get("note", ""),
            data.get("extra", {}),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "metric": self.metric,
            "unit": self.unit,
            "value": self.value.to_json() if self.value else None,
            "baseline_name": self.baseline_name,
            "baseline": self.baseline.to_json() if self.baseline else None,
            "ratio": self.ratio.to_json() if self.ratio else None,
            "target": asdict(self.target) if self.target else None,
            "target_met": self.target_met(),
            "note": self.note,
            "extra": self.extra,
        }


def unavailable(scenario: str, metric: str, unit: str, why: str, **kw: Any) -> Row:
    """A row for something that could not be measured in this build, saying why."""
    return Row(scenario, metric, unit, note=f"n/a: {why}", **kw)


def _num(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_figure(figure: Figure | None) -> str:
    """`median [min–max]`, or `n/a`."""
    if figure is None:
        return "n/a"
    return f"{_num(figure.median)} [{_num(figure.min)}–{_num(figure.max)}]"
