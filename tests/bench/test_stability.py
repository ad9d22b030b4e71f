"""Two runs' headline ratios compared (bench/stability.py): within ±15 % or not, rows of one
run only, and the command's exit status."""

from __future__ import annotations

from pathlib import Path

from bench import report, stability
from bench.__main__ import main
from bench.stats import Figure, Row, Target


def _row(metric: str, ratio: float | None, target: Target | None = None) -> Row:
    return Row(
        "ingest",
        metric,
        "req/s",
        Figure.of([100.0]),
        "bare",
        Figure.of([200.0]),
        Figure.of([ratio, ratio]) if ratio is not None else None,
        target or Target(">=", 0.5),
    )


def test_ratios_within_fifteen_percent_pass_and_others_do_not() -> None:
    first = [_row("steady", 0.50), _row("jumpy", 0.50), _row("gone", 0.4)]
    second = [_row("steady", 0.56), _row("jumpy", 0.60), _row("new", 1.0)]
    by_metric = {c.metric: c for c in stability.compare(first, second)}
    assert by_metric["steady"].within() is True  # +12 %
    assert by_metric["jumpy"].within() is False  # +20 %
    assert by_metric["gone"].within() is None and by_metric["new"].within() is None
    assert abs((by_metric["jumpy"].change or 0) - 0.2) < 1e-9
    text = stability.table(list(by_metric.values()))
    assert "OUTSIDE ±15%" in text and "one run only" in text


def test_only_rows_whose_target_is_a_ratio_are_headlines() -> None:
    value_target = _row("p99", 2.0, Target("<=", 100, "value"))
    untargeted = Row("ingest", "p50", "ms", Figure.of([1.0]), "bare", Figure.of([1.0]))
    assert stability.compare([value_target, untargeted], [value_target, untargeted]) == []


def test_the_command_exits_non_zero_when_a_ratio_moved_too_far(tmp_path: Path) -> None:
    meta = {
        "mode": "quick",
        "command": "make bench",
        "machine": "m",
        "rounds": 3,
        "finished_at": "now",
        "duration_s": 1.0,
    }
    for name, ratio in (("a", 0.5), ("b", 0.52), ("c", 0.8)):
        report.write([_row("vote req/s", ratio)], meta, tmp_path, name)
    assert main(["stability", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    assert main(["stability", str(tmp_path / "a.json"), str(tmp_path / "c.json")]) == 1
