"""Run wrk with one of the scenario Lua scripts and read back its machine-readable summary."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import orjson

from bench.pinning import taskset_prefix

MARKER = "BENCH_WRK "


class WrkError(RuntimeError):
    """wrk is missing or did not print its summary."""


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured; throughput counts only 2xx answers."""

    requests: int
    duration_s: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def ok_per_second(self) -> float:
        """Successful (2xx) responses per second."""
        return max(self.requests - self.non2xx, 0) / self.duration_s if self.duration_s else 0.0

    @property
    def error_share(self) -> float:
        """Share of requests answered non-2xx or lost to socket errors."""
        total = self.requests + self.socket_errors
        return (self.non2xx + self.socket_errors) / total if total else 1.0


def parse_output(stdout: str) -> WrkResult:
    """The summary our report.lua prints as one `BENCH_WRK {json}` line."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            data = orjson.loads(line[len(MARKER) :])
            return WrkResult(
                requests=int(data["requests"]),
                duration_s=data["duration_us"] / 1e6,
                non2xx=int(data["non2xx"]),
                socket_errors=int(
                    data["connect_errors"]
                    + data["read_errors"]
                    + data["write_errors"]
                    + data["timeouts"]
                ),
                p50_ms=data["p50_us"] / 1000,
                p90_ms=data["p90_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                max_ms=data["max_us"] / 1000,
            )
    raise WrkError(f"wrk printed no summary line:\n{stdout[-2000:]}")


def script_text(name: str, per_second: float | None = None) -> str:
    """A scenario script with the shared `done` reporter appended, and with `per_second` the
    pacer (pace.lua) set to that many requests a second per wrk thread."""
    lua = resources.files("bench").joinpath("lua")
    parts = [lua.joinpath(f"{name}.lua").read_text(), lua.joinpath("report.lua").read_text()]
    if per_second is not None:
        if per_second <= 0:
            raise ValueError("a paced run needs a positive rate")
        parts += [f"pace_per_s = {per_second:.3f}", lua.joinpath("pace.lua").read_text()]
    return "\n".join(parts)


def run_wrk(
    url: str,
    script: str,
    args: list[str],
    *,
    duration_s: float,
    connections: int = 32,
    threads: int = 1,
    timeout_s: float = 5.0,
    cores: Iterable[int] | None = None,
    per_second: float | None = None,
) -> WrkResult:
    """Run wrk against `url` (loopback only) with `script` for `duration_s` seconds, on
    `cores` when given (`taskset`), else wherever the scheduler puts it; at saturation, or
    at `per_second` requests a second in all when given."""
    if not url.startswith(("http://127.0.0.1:", "http://localhost:", "http://[::1]:")):
        raise WrkError(f"refusing to load a non-loopback target: {url}")
    wrk = shutil.which("wrk")
    if wrk is None:
        raise WrkError("wrk is not installed; run `make setup`")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script_text(script, None if per_second is None else per_second / threads))
        path = Path(f.name)
    try:
        result = subprocess.run(
            [
                *taskset_prefix(cores),
                wrk,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(duration_s))}s",
                f"--timeout={timeout_s:g}s",
                "-s",
                str(path),
                url,
                "--",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=duration_s + 60,
            check=False,
        )
    finally:
        path.unlink(missing_ok=True)
    return parse_output(result.stdout + result.stderr)
