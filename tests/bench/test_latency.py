"""The bookkeeping that turns tallies seen by a reader into per-vote latencies."""

from __future__ import annotations

from bench.latency import TallyWatch, new_histogram, summary_ms


async def test_a_vote_is_visible_once_the_total_covers_every_vote_sent_before_its_202() -> None:
    resolved: list[tuple[float, float]] = []
    watch = TallyWatch(lambda acked, seen: resolved.append((acked, seen)))
    watch.seen("a", 10)
    watch.expect("a", 12, 1.0)
    watch.expect("a", 13, 2.0)
    watch.seen("a", 11)
    assert resolved == []
    watch.seen("a", 12)
    assert [acked for acked, _ in resolved] == [1.0]
    assert watch.pending() == 1
    watch.seen("a", 20)
    assert [acked for acked, _ in resolved] == [1.0, 2.0]
    assert watch.pending() == 0


async def test_a_vote_already_covered_resolves_at_once() -> None:
    resolved: list[float] = []
    watch = TallyWatch(lambda acked, _seen: resolved.append(acked))
    watch.seen("b", 5)
    watch.expect("b", 5, 3.0)
    assert resolved == [3.0]
    assert watch.pending() == 0


def test_coordinated_omission_correction_fills_in_the_stall() -> None:
    hist = new_histogram()
    # One 100 ms stall while votes were due every 10 ms: 9 more samples fill the gap.
    hist.record_corrected_value(100_000, 10_000)
    summary = summary_ms(hist)
    assert summary["count"] == 10
    assert summary["max"] >= 99.9
    assert summary["p50"] < 60


async def test_votes_never_seen_are_recorded_at_the_time_waited() -> None:
    resolved: list[tuple[float, float]] = []
    watch = TallyWatch(lambda acked, seen: resolved.append((acked, seen)))
    watch.seen("c", 0)
    watch.expect("c", 1, 1.0)
    watch.expect("c", 2, 2.0)
    assert watch.give_up(9.0) == 2
    assert resolved == [(1.0, 9.0), (2.0, 9.0)]
    assert watch.pending() == 0
