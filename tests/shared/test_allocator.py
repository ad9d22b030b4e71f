"""glibc's mmap threshold pinned (shared/allocator.py): the rate limits' churn of keys no
longer leaves resident memory stepping up while the keys held stay flat."""

from __future__ import annotations

import os

import pytest

from bench.window_memory import WINDOW_S, growth_after_first_windows, run

MB = 1_000_000
# 500 new readers a second for 50 simulated minutes: 30,000 keys held, 1.5 million seen.
RATE, SECONDS, EVERY = 500, 3000, 300

pytestmark = pytest.mark.skipif(
    not hasattr(os, "confstr") or "glibc" not in (os.confstr("CS_GNU_LIBC_VERSION") or ""),
    reason="the threshold is glibc's",
)


def test_memory_holds_once_the_window_is_full_with_the_threshold_pinned() -> None:
    samples = run(True, RATE, SECONDS, EVERY)
    held = {keys for second, keys, _ in samples if second >= WINDOW_S}
    assert held == {int(RATE * WINDOW_S) + 1}
    assert growth_after_first_windows(samples) < MB // 2


def test_the_same_churn_left_to_glibc_keeps_what_it_freed() -> None:
    # What the pinning is for: without it the same run ends with more resident memory.
    samples = run(False, RATE, SECONDS, EVERY)
    assert growth_after_first_windows(samples) > MB
