"""Which core each part of a measurement runs on, and the CPU time a process tree used.

On a shared two-core machine a service, its dependency (Kafka or Redis) and the load
generator otherwise fight for the same cores, so a figure measures the scheduler as much
as the service. A fair comparison gives the service under test one core and everything
else the other, for the service and its baselines alike: what `taskset -a -p -c` does,
applied here to every thread of a process and of its children (threads started later
inherit the affinity of the thread that starts them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Final

# Ticks per second of /proc's utime and stime.
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def cores() -> list[int]:
    """The cores this process may run on."""
    return sorted(os.sched_getaffinity(0))


def split_cores() -> tuple[set[int], set[int]] | None:
    """(the service's core, the other cores) — None on a one-core machine, where there is
    nothing to split."""
    available = cores()
    if len(available) < 2:
        return None
    return {available[0]}, set(available[1:])


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (uvicorn's workers, a shell's child)."""
    found = [pid]
    for parent in found:  # grows while walked: breadth first
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{parent}/task").iterdir():
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def threads(pid: int) -> list[int]:
    """The thread ids of a process (the JVM's and librdkafka's threads among them)."""
    try:
        return [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    except OSError:
        return []


def pin(pid: int | None, to: Iterable[int]) -> int:
    """Restrict every thread of `pid` and of its descendants to the cores `to`; returns how
    many threads were pinned (0 when the process is gone)."""
    if pid is None:
        return 0
    allowed = set(to)
    pinned = 0
    for process in tree(pid):
        for tid in threads(process):
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(tid, allowed)
                pinned += 1
    return pinned


def affinity(pid: int) -> set[int]:
    """The cores a process may run on now."""
    return set(os.sched_getaffinity(pid))


def taskset_prefix(to: Iterable[int] | None) -> list[str]:
    """`taskset -c CORES` to start a command on those cores ([] when not pinning or when
    taskset is missing)."""
    if to is None:
        return []
    taskset = shutil.which("taskset")
    if taskset is None:
        return []
    return [taskset, "-c", ",".join(str(c) for c in sorted(to))]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process (all its threads) so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process, from /proc; None when it is gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None


def tree_cpu_seconds(pid: int | None) -> float:
    """CPU seconds used so far by `pid` and its live descendants (0 when it is gone)."""
    if pid is None:
        return 0.0
    return sum(cpu_seconds(p) for p in tree(pid))
