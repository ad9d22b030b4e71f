"""The soak harness: ingest at its maximum with a new reader on every vote, a churn of page
streams on the reader, and every service's resident memory sampled throughout; the slope
of each after the first window says whether its memory holds.

Used by the soak scenario (bench/scenarios/soak.py, `make soak`) and by its test; writes
`<name>.json` (every sample), `<name>.md` and `<name>.png`."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from bench.pinning import rss_bytes, tree, tree_cpu_seconds
from bench.stack import fetch_text
from bench.stream_churn import ChurnCounts, StreamChurn
from bench.wrk import WrkResult, run_wrk

MB = 1_000_000
VOTES_METRIC = "reactions_ingest_events"
LIMIT_KEYS_METRIC = "reactions_ingest_rate_limit_keys"
STREAMS_METRIC = "reactions_reader_sse_clients"


@dataclass(frozen=True)
class Sample:
    """One sampling instant: memory and CPU by service, and how far the load had got."""

    t: float  # seconds since the soak began
    rss: dict[str, int]  # resident bytes by service, its worker processes included
    cpu: dict[str, float]  # CPU seconds used so far by service
    votes: float | None  # votes ingest had accepted (its /metrics)
    limit_keys: float | None  # keys ingest's rate limits held in memory (its /metrics)
    streams: float | None  # page streams open on the reader (its /metrics)


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (uvicorn's workers)."""
    return sum(rss_bytes(p) or 0 for p in tree(pid))


def metric_total(text: str | None, name: str) -> float | None:
    """The sum of a metric's samples in a /metrics text, or None when it has none."""
    if text is None:
        return None
    total: float | None = None
    for family in text_string_to_metric_families(text):
        if family.name == name:
            for sample in family.samples:
                if not sample.name.endswith("_created"):
                    total = (total or 0.0) + sample.value
    return total


class MemorySampler:
    """Samples the named processes every `interval_s` in a thread, from the first instant."""

    def __init__(
        self,
        processes: Mapping[str, int],
        interval_s: float,
        *,
        ingest_metrics: str | None = None,
        reader_metrics: str | None = None,
    ) -> None:
        self.processes = dict(processes)
        self.interval_s = interval_s
        self.urls = (ingest_metrics, reader_metrics)
        self.samples: list[Sample] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._started = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self) -> list[Sample]:
        """Take a last sample, stop, and return every sample."""
        self._stopping.set()
        self._thread.join(30)
        return self.samples

    def _sample(self) -> None:
        now = time.monotonic() - self._started
        rss = {name: tree_rss(pid) for name, pid in self.processes.items()}
        cpu = {name: tree_cpu_seconds(pid) for name, pid in self.processes.items()}
        ingest, reader = (fetch_text(url) if url else None for url in self.urls)
        self.samples.append(
            Sample(
                t=now,
                rss=rss,
                cpu=cpu,
                votes=metric_total(ingest, VOTES_METRIC),
                limit_keys=metric_total(ingest, LIMIT_KEYS_METRIC),
                streams=metric_total(reader, STREAMS_METRIC),
            )
        )

    def _run(self) -> None:
        self._sample()
        while not self._stopping.wait(self.interval_s):
            self._sample()
        self._sample()


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute; None under 3 points."""
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return None
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


@dataclass
class SoakRun:
    """What one soak measured."""

    samples: list[Sample]
    wrk: WrkResult
    churn: ChurnCounts
    facts: dict[str, Any] = field(default_factory=dict)

    def services(self, first_window_s: float) -> dict[str, dict[str, float | None]]:
        """Per service: resident MB at start, at the first window's end, at the end, the
        most, and the slope in MB/min over the samples after the first window."""
        summary: dict[str, dict[str, float | None]] = {}
        for name in self.samples[0].rss:
            points = [(s.t, s.rss[name] / MB) for s in self.samples]
            after = [(t, v) for t, v in points if t >= first_window_s]
            summary[name] = {
                "start_mb": points[0][1],
                "first_window_mb": after[0][1] if after else None,
                "end_mb": points[-1][1],
                "max_mb": max(v for _, v in points),
                "slope_mb_per_min": slope_per_min(after),
                "cpu_s": self.samples[-1].cpu[name] - self.samples[0].cpu[name],
            }
        return summary

    def limit_keys(self, first_window_s: float) -> dict[str, float | None]:
        """Keys ingest's limits held: after the first window, at the end, at most."""
        held = [(s.t, s.limit_keys) for s in self.samples if s.limit_keys is not None]
        after = [k for t, k in held if t >= first_window_s]
        return {
            "first_window": after[0] if after else None,
            "end": held[-1][1] if held else None,
            "most": max((k for _, k in held), default=None),
        }

    def document(self, first_window_s: float, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Everything, for `<name>.json`."""
        seconds = self.samples[-1].t if self.samples else 0.0
        return {
            **meta,
            **self.facts,
            "first_window_s": first_window_s,
            "votes": {
                "requests": self.wrk.requests,
                "non2xx": self.wrk.non2xx,
                "socket_errors": self.wrk.socket_errors,
                "accepted_per_s": self.wrk.ok_per_second,
                "p50_ms": self.wrk.p50_ms,
                "p99_ms": self.wrk.p99_ms,
            },
            "streams": {**asdict(self.churn), "seconds": seconds},
            "limit_keys": self.limit_keys(first_window_s),
            "services": self.services(first_window_s),
            "samples": [asdict(s) for s in self.samples],
        }


def soak(
    *,
    ingest_url: str,
    reader_url: str,
    processes: Mapping[str, int],
    tokens: Path,
    start_line: int,
    duration_s: float,
    interval_s: float,
    streams_per_s: float,
    hold_s: tuple[float, float] = (1.0, 5.0),
    connections: int = 32,
    articles: int = 10_000,
    votes_per_s: float | None = None,
) -> SoakRun:
    """Votes walking `tokens` from `start_line` with wrk, at `votes_per_s` or at saturation,
    the stream churn on the reader, and the memory sampler, all for `duration_s` (loopback
    targets only)."""
    sampler = MemorySampler(
        processes,
        interval_s,
        ingest_metrics=f"{ingest_url}/metrics",
        reader_metrics=f"{reader_url}/metrics",
    )
    sampler.start()
    churn = StreamChurn(
        reader_url, rate=streams_per_s, hold_s=hold_s, duration_s=duration_s, articles=articles
    )
    try:
        votes = run_wrk(
            ingest_url,
            "walk",
            [str(tokens), str(start_line), str(articles), "bench-a"],
            duration_s=duration_s,
            connections=connections,
            per_second=votes_per_s,
        )
        streams = churn.result()
    finally:
        samples = sampler.stop()
    facts = {
        "duration_s": duration_s,
        "interval_s": interval_s,
        "connections": connections,
        "votes_per_s": votes_per_s,
        "streams_per_s": streams_per_s,
        "hold_s": list(hold_s),
    }
    return SoakRun(samples, votes, streams, facts)


def markdown(document: Mapping[str, Any]) -> str:
    """`<name>.md`: how it ran, the memory of each service, the load it carried."""
    votes, streams, keys = document["votes"], document["streams"], document["limit_keys"]
    opened_per_s = streams["opened"] / max(streams["seconds"], 1)
    paced = document.get("votes_per_s")
    pace = "at saturation" if paced is None else f"paced at {paced:,.0f} votes/s"
    lines = [
        f"# Soak ({document['mode']})",
        "",
        f"- when: {document['finished_at']}",
        f"- machine: {document['machine']}; load average at the end {document['load_end']}",
        f"- command: `{document['command']}`",
        f"- {document['duration_s']:.0f} s of votes by new readers (one wrk thread,"
        f" {document['connections']} connections, {pace}) after measuring ingest's"
        f" maximum at {document['measured_max_per_s']:,.0f} votes/s; memory sampled every"
        f" {document['interval_s']:g} s; the slope is a least-squares fit after the first"
        f" window ({document['first_window_s']:g} s, the limits' window)",
        f"- votes: {votes['accepted_per_s']:,.0f} accepted/s"
        f" ({votes['requests']:,} sent, {votes['non2xx']:,} not 2xx,"
        f" {votes['socket_errors']:,} socket errors), p50 {votes['p50_ms']:.1f} ms,"
        f" p99 {votes['p99_ms']:.1f} ms",
        f"- page streams: {streams['opened']:,} opened ({opened_per_s:,.0f}/s),"
        f" {streams['answered']:,} with tallies, {streams['refused']:,} refused,"
        f" {streams['unanswered']:,} without a tally by the end of their hold,"
        f" {streams['failed']:,} failed; the client used {streams['cpu_s']:.1f} CPU-s",
        f"- keys held by ingest's rate limits: {_count(keys['first_window'])} after the first"
        f" window, {_count(keys['end'])} at the end, {_count(keys['most'])} at most",
        "",
        "| service | RSS at start | after the first window | at the end | most |"
        " slope after the first window | CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in document["services"].items():
        slope = s["slope_mb_per_min"]
        after = s["first_window_mb"]
        lines.append(
            f"| {name} | {s['start_mb']:.1f} MB | "
            + (f"{after:.1f} MB" if after is not None else "n/a")
            + f" | {s['end_mb']:.1f} MB | {s['max_mb']:.1f} MB | "
            + (f"{slope:+.2f} MB/min" if slope is not None else "n/a")
            + f" | {s['cpu_s']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def _count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def plot(document: Mapping[str, Any], path: Path) -> None:
    """Resident memory of each service over time, and the load carried."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = document["samples"]
    minutes = [s["t"] / 60 for s in samples]
    fig, (memory, load) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for name, summary in document["services"].items():
        slope = summary["slope_mb_per_min"]
        label = name if slope is None else f"{name} ({slope:+.2f} MB/min after the first window)"
        memory.plot(minutes, [s["rss"][name] / MB for s in samples], label=label)
    for axis in (memory, load):
        axis.axvline(document["first_window_s"] / 60, color="gray", linestyle=":")
    memory.set_ylabel("resident memory, MB")
    memory.set_ylim(bottom=0)
    memory.legend(loc="lower right", fontsize=8)
    held = [(s["t"] / 60, s["limit_keys"]) for s in samples if s["limit_keys"] is not None]
    keys = memory.twinx()
    keys.plot([t for t, _ in held], [k for _, k in held], color="gray", linestyle="--")
    keys.set_ylabel("keys held by ingest's limits (dashed)")
    keys.set_ylim(bottom=0)
    memory.set_title(f"Soak ({document['mode']}): {document['command']}")
    rates, streams, times = [], [], []
    for before, after in itertools.pairwise(samples):
        if before["votes"] is not None and after["votes"] is not None and after["t"] > before["t"]:
            times.append(after["t"] / 60)
            rates.append((after["votes"] - before["votes"]) / (after["t"] - before["t"]))
            streams.append(after["streams"] or 0)
    load.plot(times, rates, label="votes accepted/s", color="tab:blue")
    load.set_ylabel("votes/s")
    load.set_xlabel("minutes")
    open_streams = load.twinx()
    open_streams.plot(times, streams, label="page streams open", color="tab:orange")
    open_streams.set_ylabel("streams open")
    load.legend(loc="lower left", fontsize=8)
    open_streams.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(document: Mapping[str, Any], directory: Path, name: str) -> list[Path]:
    """Write `<name>.json`, `<name>.md` and `<name>.png` into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.{suffix}" for suffix in ("json", "md", "png")]
    paths[0].write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    paths[1].write_text(markdown(document))
    plot(document, paths[2])
    return paths
