"""Resident memory of ingest's moving-window limits under a steady crowd of new readers,
with glibc's mmap threshold left to move and pinned (shared/allocator.py).

Each run is a fresh process driving `MovingWindow` with a simulated clock (minutes of
traffic in seconds), one new reader per hit, and reporting its resident memory each
simulated minute. The keys held are flat after the first window; what the memory does
after that is the allocator's doing.

    .venv/bin/python -m bench.window_memory --rate 2000 --seconds 2400
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import orjson

from bench.pinning import rss_bytes
from services.ingest.windows import MovingWindow
from shared.allocator import pin_mmap_threshold

WINDOW_S = 60.0
MB = 1_000_000


def churn(rate: int, seconds: int, every_s: int) -> list[tuple[int, int, int]]:
    """(simulated second, keys held, resident bytes) every `every_s` simulated seconds of
    `rate` new readers a second, each hitting the per-reader limit once."""
    now = 0.0
    window = MovingWindow(10, WINDOW_S, clock=lambda: now)
    samples = []
    reader = 0
    for second in range(seconds + 1):
        if second % every_s == 0:
            samples.append((second, len(window), rss_bytes(os.getpid()) or 0))
        for i in range(rate):
            now = second + i / rate
            window.hit(f"a.reader-{reader:012d}")
            reader += 1
    return samples


def run(pinned: bool, rate: int, seconds: int, every_s: int) -> list[tuple[int, int, int]]:
    """`churn` in a fresh process, with the threshold pinned or not."""
    command = [sys.executable, "-m", "bench.window_memory", "--child"]
    command += ["--rate", str(rate), "--seconds", str(seconds), "--every", str(every_s)]
    if pinned:
        command.append("--pinned")
    out = subprocess.run(command, check=True, capture_output=True).stdout
    return [tuple(sample) for sample in orjson.loads(out)]


def growth_after_first_windows(samples: list[tuple[int, int, int]]) -> int:
    """Bytes resident memory gained between the end of the second window and the end."""
    settled = next(rss for second, _, rss in samples if second >= 2 * WINDOW_S)
    return samples[-1][2] - settled


def main() -> None:
    """Both runs side by side, or (`--child`) one run printing its samples as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.window_memory", description=__doc__)
    parser.add_argument("--rate", type=int, default=2000, help="new readers a second")
    parser.add_argument("--seconds", type=int, default=2400, help="simulated seconds")
    parser.add_argument("--every", type=int, default=60, help="sample every N simulated s")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pinned", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.pinned and not pin_mmap_threshold():
            sys.exit("the mmap threshold cannot be pinned here (not glibc)")
        sys.stdout.buffer.write(orjson.dumps(churn(args.rate, args.seconds, args.every)))
        return
    runs = {
        "threshold left to glibc": run(False, args.rate, args.seconds, args.every),
        "threshold pinned": run(True, args.rate, args.seconds, args.every),
    }
    lines = [f"{args.rate:,} new readers/s, {WINDOW_S:g} s window, {args.seconds:,} s simulated"]
    lines.append("second  " + "  ".join(f"{name:>24}" for name in runs))
    for row in zip(*runs.values(), strict=True):
        second, keys = row[0][0], row[0][1]
        cells = "  ".join(f"{rss / MB:>17.1f} MB RSS" for _, _, rss in row)
        lines.append(f"{second:>6}  {cells}  ({keys:,} keys)")
    for name, samples in runs.items():
        gained = growth_after_first_windows(samples) / MB
        lines.append(f"{name}: {gained:+.1f} MB after the first two windows")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
