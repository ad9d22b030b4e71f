"""The bench's pinning (bench/pinning.py): every thread of a process and of its children
goes to the cores asked for, commands start on them, and CPU time is read per process tree."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench import pinning
from tests.support import wait_until

# A parent with a worker thread and a child process, all spinning until killed.
FAMILY = """
import subprocess, sys, threading
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
print(child.pid, flush=True)
spin()
"""

needs_two_cores = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="pinning needs two cores to tell them apart"
)


@pytest.fixture
def family() -> Iterator[tuple[int, int]]:
    """(parent pid, child pid) of a spinning family; killed afterwards."""
    parent = subprocess.Popen(
        [sys.executable, "-c", FAMILY], stdout=subprocess.PIPE, start_new_session=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        yield parent.pid, child
    finally:
        for pid in (child, parent.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        parent.wait(10)


@needs_two_cores
def test_pin_moves_every_thread_of_the_process_and_its_children(
    family: tuple[int, int],
) -> None:
    parent, child = family
    split = pinning.split_cores()
    assert split is not None
    service, other = split
    assert service.isdisjoint(other) and service | other == set(pinning.cores())

    assert set(pinning.tree(parent)) >= {parent, child}
    threads = pinning.threads(parent) + pinning.threads(child)
    assert len(pinning.threads(parent)) >= 2  # the main thread and the spinning one
    assert pinning.pin(parent, other) == len(threads)
    for tid in threads:
        assert os.sched_getaffinity(tid) == other
    pinning.pin(parent, service)
    assert pinning.affinity(parent) == service and pinning.affinity(child) == service


def test_pinning_a_process_that_is_gone_pins_nothing() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(30)
    assert pinning.pin(gone.pid, {0}) == 0
    assert pinning.pin(None, {0}) == 0
    assert pinning.tree_cpu_seconds(None) == 0.0


def test_cpu_seconds_count_the_whole_tree(family: tuple[int, int]) -> None:
    parent, child = family
    first = pinning.tree_cpu_seconds(parent)

    def grown() -> bool:
        return pinning.tree_cpu_seconds(parent) > first + 0.2

    wait_until(grown, timeout=30, what="the spinning family to use CPU time")
    # The tree's time is the parent's plus the child's.
    both = pinning.cpu_seconds(parent) + pinning.cpu_seconds(child)
    assert abs(pinning.tree_cpu_seconds(parent) - both) < 0.2


@needs_two_cores
def test_commands_start_on_the_cores_asked_for() -> None:
    prefix = pinning.taskset_prefix({1})
    assert prefix[-2:] == ["-c", "1"]
    shown = subprocess.run(
        [*prefix, sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == "[1]"
    assert pinning.taskset_prefix(None) == []
