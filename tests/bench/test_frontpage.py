"""The front-page scenario's bookkeeping: a vote is on screen once a page stream carries
its article's tally with a seq at least the vote's; the pages are as the report says."""

from __future__ import annotations

import time

from bench.frontpage_load import ScreenWatch, Seen, Spec
from bench.scenarios.frontpage import BARS, PAGES, VISIBLE, front_pages


def test_a_vote_is_on_screen_once_a_stream_carries_its_seq() -> None:
    seen = Seen()
    watch = ScreenWatch(seen)
    watch.show("a", -1)  # the tally at connect, before any vote
    watch.expect("a", 12, acked_at=time.perf_counter())
    watch.expect("a", 15, acked_at=time.perf_counter())
    watch.show("b", 20)  # another article's seq says nothing about this one
    watch.show("a", 11)
    assert watch.pending() == 2 and seen.to_screen.get_total_count() == 0
    watch.show("a", 13)
    assert watch.pending() == 1 and seen.to_screen.get_total_count() == 1
    watch.show("a", 12)  # an older tally (another stream) changes nothing
    watch.show("a", 15)
    assert watch.pending() == 0 and seen.to_screen.get_total_count() == 2


def test_a_vote_shown_before_its_202_was_read_counts_at_once() -> None:
    seen = Seen()
    watch = ScreenWatch(seen)
    watch.show("a", 30)
    watch.expect("a", 30, acked_at=time.perf_counter())
    assert watch.pending() == 0 and seen.to_screen.get_total_count() == 1


def test_pages_are_distinct_and_the_bars_in_view_come_first() -> None:
    pages = front_pages()
    assert len(pages) == PAGES and all(len(page) == BARS for page in pages)
    assert len({a for page in pages for a in page}) == PAGES * BARS
    spec = Spec("", "", pages, VISIBLE, 1, 1, 1, 0, 1, 0, [])
    assert spec.visible_ids(pages[0]) == pages[0][:VISIBLE]
