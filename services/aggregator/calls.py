"""A batch's apply calls: each article's events cut into script calls (at most
MAX_EVENTS_PER_CALL events each and, for trending, the events of one minute), and what
their replies add up to for the batch's report."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from services.aggregator.decode import ArticleBatch
from services.aggregator.marks import Chain, chain_of
from services.aggregator.scripts import MAX_EVENTS_PER_CALL, ApplyReply
from shared.events import ReactionEvent
from shared.tallies import article_slot, counts_key, mark_keys, readers_key

if TYPE_CHECKING:
    from services.aggregator.applier import BatchReport

ALL: Final = "all"


@dataclass(slots=True)
class ApplyCall:
    """One apply call: a chunk of an article's events, and its reply once it applied."""

    partition: int
    chain: Chain  # its partition and its article's slot (marks.py)
    keys: tuple[str, str, str]
    payload: str
    minute: int | None  # when its events were cast, for trending (None: not counted there)
    reply: ApplyReply | None = None


def apply_calls(by_article: dict[str, ArticleBatch], *, by_minute: bool) -> list[list[ApplyCall]]:
    """The calls of each article: its events in chunks of at most MAX_EVENTS_PER_CALL and,
    `by_minute`, of one minute each (for trending; a live batch's are almost all one)."""
    step, marks = MAX_EVENTS_PER_CALL, mark_keys()
    calls = []
    for article_id, article in by_article.items():
        slot, lines, partition = article_slot(article_id), article.lines, article.partition
        keys = (counts_key(article_id), readers_key(article_id), marks[slot])
        chain = chain_of(partition, slot)
        minutes = article.minutes if by_minute else [(0, None)]
        if len(lines) <= step and len(minutes) == 1:  # most articles: one call
            calls.append([ApplyCall(partition, chain, keys, "".join(lines), minutes[0][1])])
            continue
        ends = [start for start, _ in minutes[1:]] + [len(lines)]
        calls.append(
            [
                ApplyCall(partition, chain, keys, "".join(lines[at : min(at + step, end)]), minute)
                for (start, minute), end in zip(minutes, ends, strict=True)
                for at in range(start, end, step)
            ]
        )
    return calls


def _merged(calls: list[ApplyCall]) -> ApplyReply:
    """The replies of an article's calls, all applied, as one."""
    first = calls[0].reply
    assert first is not None
    for call in calls[1:]:
        assert call.reply is not None
        first.merge(call.reply)
    return first


def _trend_deltas(
    trends: dict[int, dict[str, list[str | int]]], article_id: str, calls: list[ApplyCall]
) -> None:
    """Add an article's net deltas per reaction (and `all`) to `trends`, by minute cast."""
    for call in calls:
        assert call.reply is not None
        if call.minute is None or not call.reply.deltas:
            continue
        deltas = trends.setdefault(call.minute, defaultdict(list))
        for reaction, delta in call.reply.deltas.items():
            deltas[reaction] += (article_id, delta)
        net = sum(call.reply.deltas.values())
        if net:
            deltas[ALL] += (article_id, net)


def fold_replies(
    report: BatchReport, by_article: dict[str, ArticleBatch], calls: list[list[ApplyCall]]
) -> list[tuple[int, ReactionEvent]]:
    """Add the apply replies to `report` (outcomes, changed articles, trending deltas);
    return the corrective events they ask for, with their partitions."""
    outcomes = dict.fromkeys(("applied", "noop", "duplicate", "stale"), 0)
    trends: dict[int, dict[str, list[str | int]]] = {}
    correctives: list[tuple[int, ReactionEvent]] = []
    for (article_id, article), article_calls in zip(by_article.items(), calls, strict=True):
        _trend_deltas(trends, article_id, article_calls)  # before the replies are merged
        reply = _merged(article_calls)
        outcomes["applied"] += reply.applied
        outcomes["noop"] += reply.noop
        outcomes["duplicate"] += reply.duplicate
        outcomes["stale"] += reply.stale
        # Announced whenever its seq moved, counts changed or not: a reader who voted the
        # reaction they had sees a tally reach that vote's seq, and knows it is in.
        if reply.applied or reply.noop or reply.stale:
            report.changed.append(article_id)
        for user, reaction, ts in reply.correctives:
            event = ReactionEvent.new(
                "set" if reaction else "clear", article_id, user, reaction or None, ts
            )
            correctives.append((article.partition, event))
    report.outcomes = outcomes
    report.trends = trends
    return correctives
