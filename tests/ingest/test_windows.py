"""The in-memory moving window of the abuse limits: the decisions of a plain model and of the
`limits` library's moving window, exact retry times, and memory that follows the window
whatever the rate of new keys."""

from __future__ import annotations

import asyncio
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from limits import RateLimitItemPerSecond
from limits.aio.storage import memory as library_memory
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from services.ingest.config import IngestSettings
from services.ingest.ratelimit import RateLimits
from services.ingest.windows import MovingWindow
from shared.http import ApiError


class Clock:
    """A clock the test moves; quarter seconds keep every sum exact in binary."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def model_hit(
    accepted: dict[str, list[float]], key: str, now: float, limit: int, window: float
) -> float | None:
    """The moving window by definition: every accepted time kept, those at most `window`
    old counted."""
    recent = [t for t in accepted.setdefault(key, []) if t >= now - window]
    if len(recent) >= limit:
        return recent[-limit] + window - now
    accepted[key].append(now)
    return None


STEPS = st.lists(
    st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.75, 2.0, 3.0, 7.0]), st.integers(0, 3)),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(limit=st.integers(1, 5), window=st.integers(1, 4), steps=STEPS)
def test_decisions_and_retry_times_are_those_of_the_definition(
    limit: int, window: int, steps: list[tuple[float, int]]
) -> None:
    clock = Clock()
    moving = MovingWindow(limit, window, clock)
    accepted: dict[str, list[float]] = {}
    for advance, k in steps:
        clock.now += advance
        key = f"k{k}"
        assert moving.hit(key) == model_hit(accepted, key, clock.now, limit, window)
        # Nothing is held that has left the window (the key hit last always stays).
        assert len(moving) <= len(
            [k for k, times in accepted.items() if times and times[-1] >= clock.now - window]
        )


@settings(max_examples=300, deadline=None)
@given(limit=st.integers(1, 5), window=st.integers(1, 4), steps=STEPS)
def test_decisions_are_those_of_the_limits_librarys_moving_window(
    limit: int, window: int, steps: list[tuple[float, int]]
) -> None:
    clock = Clock()
    # The library reads time.time() through its module; the same clock drives both.
    fake_time = types.SimpleNamespace(time=clock)
    original = library_memory.time
    library_memory.time = fake_time  # type: ignore[assignment]
    try:
        decisions = asyncio.run(_both(limit, window, steps, clock))
    finally:
        library_memory.time = original
    for ours, theirs in decisions:
        assert (ours is None) == theirs


async def _both(
    limit: int, window: int, steps: list[tuple[float, int]], clock: Clock
) -> list[tuple[float | None, bool]]:
    library = MovingWindowRateLimiter(storage_from_string("async+memory://"))
    item = RateLimitItemPerSecond(limit, window)
    moving = MovingWindow(limit, window, clock)
    decisions = []
    for advance, k in steps:
        clock.now += advance
        decisions.append((moving.hit(f"k{k}"), await library.hit(item, f"k{k}")))
    return decisions


def test_a_refused_hit_is_told_the_exact_time_until_one_would_be_accepted() -> None:
    clock = Clock()
    moving = MovingWindow(3, 60, clock)
    for offset in (0.0, 10.0, 20.0):
        clock.now = 1000.0 + offset
        assert moving.hit("r") is None
    clock.now = 1030.0
    assert moving.hit("r") == 30.0  # the first hit leaves the window at 1060
    clock.now = 1060.0
    assert moving.hit("r") == 0.0  # still counted at exactly 60 s old
    clock.now = 1060.25
    assert moving.hit("r") is None
    clock.now = 1060.5
    assert moving.hit("r") == 9.5  # now the hit of 1010 is the one to wait for
    assert moving.hit("other") is None  # keys are counted apart


def test_a_crowd_of_new_keys_holds_one_window_of_them_and_no_more() -> None:
    clock = Clock()
    window, per_second = 5, 1000
    moving = MovingWindow(60, window, clock)
    most = 0
    for i in range(10 * window * per_second):
        clock.now = 1000.0 + i / per_second
        assert moving.hit(f"a.reader-{i}") is None
        if i >= window * per_second:
            # Exactly the keys hit in the last window: those older are gone.
            assert window * per_second <= len(moving) <= window * per_second + 1
        most = max(most, len(moving))
    assert most <= window * per_second + 1


def test_one_busy_key_holds_little_more_than_its_window_of_times() -> None:
    clock = Clock()
    window, per_second = 2, 1000
    moving = MovingWindow(100_000_000, window, clock)
    for i in range(6 * window * per_second):
        clock.now = 1000.0 + i / per_second
        assert moving.hit("network") is None
        assert moving.times_held() <= window * per_second * 8 / 7 + 2
    assert len(moving) == 1


def test_the_keys_of_a_quiet_window_go_with_the_next_hit() -> None:
    clock = Clock()
    moving = MovingWindow(5, 60, clock)
    for i in range(1000):
        moving.hit(f"k{i}")
    clock.now += 60.25
    assert moving.hit("late") is None
    assert len(moving) == 1


def test_a_window_needs_a_limit_and_a_length() -> None:
    with pytest.raises(ValueError, match="moving window"):
        MovingWindow(0, 60)
    with pytest.raises(ValueError, match="moving window"):
        MovingWindow(5, 0)


async def test_rate_limits_in_memory_refuse_with_retry_after_and_hold_one_window() -> None:
    clock = Clock()
    settings = IngestSettings(
        rate_limit_storage="memory://", rate_limit_reader="3/minute", rate_limit_ip="600/minute"
    )
    limits = RateLimits(settings, clock)
    assert limits.local is not None
    for _ in range(3):
        await limits.check("reader", "a.voter")
    with pytest.raises(ApiError) as refused:
        await limits.check("reader", "a.voter")
    assert (refused.value.status, refused.value.code) == (429, "rate_limited")
    assert refused.value.headers == {"Retry-After": "60"}
    clock.now += 59.5
    with pytest.raises(ApiError) as again:
        await limits.check("reader", "a.voter")
    assert again.value.headers == {"Retry-After": "1"}
    clock.now += 0.75
    await limits.check("reader", "a.voter")

    # Three minutes of new readers, 200 a second, each vote also counted on one network
    # with its limit lifted: each limit holds the last minute, not the three.
    lifted = RateLimits(
        IngestSettings(rate_limit_storage="memory://", rate_limit_ip="100000000/minute"), clock
    )
    assert lifted.local is not None
    for i in range(180 * 200):
        clock.now += 1 / 200
        await lifted.check("ip", "network")
        await lifted.check("reader", f"a.crowd-{i}")
    assert len(lifted.local["reader"]) <= 60 * 200 + 1
    assert lifted.local["ip"].times_held() <= 60 * 200 * 8 / 7 + 2
