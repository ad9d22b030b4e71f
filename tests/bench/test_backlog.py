"""The backlog's shape: counts, skew, changes and clears, valid events."""

from __future__ import annotations

from collections import Counter

from bench.backlog import Workload, generate
from shared.events import decode_event


def test_workload_is_skewed_valid_and_has_changes_and_clears() -> None:
    events = list(generate(Workload(events=20_000, articles=1000, readers=100_000)))
    assert len(events) == 20_000
    per_article = Counter(e.article_id for e in events)
    top = per_article.most_common(1)[0][1]
    assert top > 20 * (20_000 / 1000)  # Zipf: the head is far above the mean
    clears = sum(e.op == "clear" for e in events)
    assert 0.05 * 20_000 < clears < 0.15 * 20_000
    for event in events[:500]:
        assert decode_event(event.encode()) == event


def test_workload_is_reproducible() -> None:
    a = [(e.article_id, e.user_id, e.op, e.reaction) for e in generate(Workload(events=500))]
    b = [(e.article_id, e.user_id, e.op, e.reaction) for e in generate(Workload(events=500))]
    assert a == b
