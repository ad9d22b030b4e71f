"""Figures, ratios, targets and the tables built from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.report import load, markdown_table, text_table, write
from bench.stats import Figure, Row, Target, fmt_figure, paired_ratios, unavailable


def test_figure_is_median_min_max_of_runs() -> None:
    figure = Figure.of([3.0, 1.0, 2.0, 10.0])
    assert (figure.median, figure.min, figure.max) == (2.5, 1.0, 10.0)


def test_figure_needs_a_run() -> None:
    with pytest.raises(ValueError, match="at least one run"):
        Figure.of([])


def test_ratios_are_taken_per_round_then_summarised() -> None:
    ratio = paired_ratios([100.0, 90.0, 50.0], [200.0, 100.0, 100.0])
    assert ratio is not None
    assert ratio.runs == (0.5, 0.9, 0.5)
    assert ratio.median == 0.5


def test_ratios_need_matching_nonzero_baselines() -> None:
    assert paired_ratios([1.0, 2.0], [1.0]) is None
    assert paired_ratios([1.0], [0.0]) is None


def test_targets_on_ratio_and_value() -> None:
    row = Row("ingest", "req/s", "req/s", Figure.of([8.0]), "bare", Figure.of([10.0]))
    row.ratio = paired_ratios([8.0], [10.0])
    row.target = Target(">=", 0.8)
    assert row.target_met() is True
    row.target = Target(">=", 0.9)
    assert row.target_met() is False
    row.target = Target("<=", 7, "value")
    assert row.target_met() is False
    assert (
        unavailable("sse", "p99", "ms", "no hook", target=Target("<=", 500, "value")).target_met()
        is None
    )


def test_tables_show_values_ratios_targets_and_misses() -> None:
    row = Row(
        "read",
        "GET req/s",
        "req/s",
        Figure.of([900.0, 1000.0, 1100.0]),
        "bare",
        Figure.of([2000.0, 2000.0, 2000.0]),
        paired_ratios([900.0, 1000.0, 1100.0], [2000.0] * 3),
        Target(">=", 0.9),
        "wrk",
    )
    missing = unavailable("read", "bulk", "req/s", "GET /v1/reactions answered 404")
    text = text_table([row, missing])
    assert "1,000 [900–1,100] req/s" in text
    assert "0.50 [0.45–0.55]×" in text
    assert "MISS" in text
    assert "n/a: GET /v1/reactions answered 404" in text
    md = markdown_table([row, missing]).splitlines()
    assert len(md) == 4
    assert md[2].startswith("| read | GET req/s |")


def test_fmt_figure_of_nothing() -> None:
    assert fmt_figure(None) == "n/a"


def test_rows_survive_the_json_round_trip(tmp_path: Path) -> None:
    rows = [
        Row(
            "drain",
            "ev/s",
            "ev/s",
            Figure.of([1.0, 2.0, 3.0]),
            "raw",
            Figure.of([2.0] * 3),
            paired_ratios([1.0, 2.0, 3.0], [2.0] * 3),
            Target(">=", 100_000, "value"),
            "n",
        ),
        unavailable("sse", "p99", "ms", "no hook"),
    ]
    meta = {"mode": "quick", "command": "x", "machine": "m", "finished_at": "t", "duration_s": 1.0}
    write(rows, meta, tmp_path, "run")
    loaded, loaded_meta = load(tmp_path / "run.json")
    assert [r.to_json() for r in loaded] == [r.to_json() for r in rows]
    assert loaded_meta == meta
    assert (tmp_path / "run.png").stat().st_size > 0
    assert "## Headline" in (tmp_path / "run.md").read_text()
