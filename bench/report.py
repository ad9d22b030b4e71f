"""The results: a plain table on stdout, latest.json, latest.md and latest.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bench.stats import Row, fmt_figure

RESULTS_DIR = Path(__file__).resolve().parent / "results"
HEADERS = ("scenario", "metric", "value (median [min–max])", "baseline", "ratio", "target", "met")


def cells(row: Row) -> tuple[str, ...]:
    """The table cells of one row."""
    value = fmt_figure(row.value) + (f" {row.unit}" if row.value else "")
    baseline = ""
    if row.baseline_name:
        baseline = (
            f"{row.baseline_name}: {fmt_figure(row.baseline)}"
            if row.baseline
            else row.baseline_name
        )
    ratio = fmt_figure(row.ratio) + "×" if row.ratio else ("" if not row.baseline_name else "n/a")
    target = row.target.describe(row.unit) if row.target else ""
    met = {True: "yes", False: "MISS", None: ""}[row.target_met()]
    if row.target and met == "":
        met = "n/a"
    return (row.scenario, row.metric, value, baseline, ratio, target, met)


def text_table(rows: list[Row]) -> str:
    """Aligned columns, notes indented under their row."""
    table = [HEADERS, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    out = []
    for i, line in enumerate(table):
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
        elif rows[i - 1].note:
            out.append(f"    ↳ {rows[i - 1].note}")
    return "\n".join(out)


def markdown_table(rows: list[Row]) -> str:
    """A GitHub markdown table; notes in their own column."""
    lines = [
        "| " + " | ".join((*HEADERS, "note")) + " |",
        "|" + "---|" * (len(HEADERS) + 1),
    ]
    for row in rows:
        note = row.note.replace("|", "\\|")
        lines.append("| " + " | ".join((*cells(row), note)) + " |")
    return "\n".join(lines)


def headline(rows: list[Row]) -> list[Row]:
    """The rows with a target or a baseline: what the README shows."""
    return [r for r in rows if r.target is not None or r.baseline_name is not None]


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    """latest.md: how it was run, the headline table, then every figure."""
    return (
        f"# Benchmark results ({meta['mode']})\n\n"
        f"- when: {meta['finished_at']}\n"
        f"- machine: {meta['machine']}\n"
        f"- command: `{meta['command']}`\n"
        f"- duration: {meta['duration_s']:.0f} s\n"
        "- every figure is the median of the runs with [min–max]; every ratio is taken per\n"
        "  round against a baseline measured back to back, then summarised the same way\n\n"
        "## Headline (figures with a baseline or a target)\n\n"
        + markdown_table(headline(rows))
        + "\n\n## Every figure\n\n"
        + markdown_table(rows)
        + "\n"
    )


def plot(rows: list[Row], path: Path) -> None:
    """Ratios to baseline (with min–max) beside their targets, and end-to-end percentiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratio_rows = [r for r in rows if r.ratio is not None]
    e2e = [r for r in rows if r.scenario == "e2e" and r.unit == "ms" and r.value is not None]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, max(4.0, 0.5 * len(ratio_rows) + 1.5)))
    labels = [f"{r.scenario}: {r.metric}\nvs {r.baseline_name}" for r in ratio_rows]
    medians = [r.ratio.median for r in ratio_rows if r.ratio]
    low = [r.ratio.median - r.ratio.min for r in ratio_rows if r.ratio]
    high = [r.ratio.max - r.ratio.median for r in ratio_rows if r.ratio]
    ys = list(range(len(ratio_rows)))
    colors = [
        {True: "tab:green", False: "tab:red", None: "tab:gray"}[r.target_met()] for r in ratio_rows
    ]
    left.barh(ys, medians, xerr=[low, high], color=colors, capsize=3)
    for y, r in zip(ys, ratio_rows, strict=True):
        if r.target and r.target.subject == "ratio":
            left.plot([r.target.bound] * 2, [y - 0.4, y + 0.4], color="black", linewidth=2)
    left.axvline(1.0, color="gray", linestyle=":")
    left.set_yticks(ys, labels, fontsize=7)
    left.invert_yaxis()
    left.set_xlabel("ratio to same-run baseline (bar: median, whiskers: min–max, tick: target)")
    left.set_title("Ratios to baseline")
    levels = sorted({r.metric.split(" at ")[1] for r in e2e})
    keys = ["p50", "p90", "p99", "p99.9", "max"]
    for level in levels:
        values = []
        for key in keys:
            match = [r for r in e2e if r.metric == f"{key} at {level}"]
            values.append(match[0].value.median if match and match[0].value else float("nan"))
        right.plot(keys, values, marker="o", label=level)
    right.axhline(100, color="black", linestyle="--", linewidth=1, label="p99 target (50 %)")
    right.set_yscale("log")
    right.set_ylabel("ms, 202 → tally visible (median of runs)")
    right.set_title("End-to-end latency by load")
    if levels:
        right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load(path: Path) -> tuple[list[Row], dict[str, Any]]:
    """Rows and run facts from a results JSON file."""
    data = orjson.loads(path.read_bytes())
    rows = [Row.from_json(r) for r in data.pop("rows")]
    return rows, data


def write(
    rows: list[Row], meta: dict[str, Any], directory: Path = RESULTS_DIR, name: str = "latest"
) -> list[Path]:
    """Write <name>.json, <name>.md and <name>.png into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{name}.json"
    md_path = directory / f"{name}.md"
    png_path = directory / f"{name}.png"
    json_path.write_bytes(
        orjson.dumps({**meta, "rows": [r.to_json() for r in rows]}, option=orjson.OPT_INDENT_2)
    )
    md_path.write_text(markdown(rows, meta))
    plot(rows, png_path)
    return [json_path, md_path, png_path]
