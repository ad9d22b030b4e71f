"""Client faults: retried and duplicated requests, requests that arrive out of order."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from deploy.local.client import VoteClient
from tests.faults.oracle import model
from tests.faults.rig import Rig
from tests.faults.traffic import Outcome, Traffic, wait_for_outcomes
from tests.support import TopicRecord


class RetryingTraffic(Traffic):
    """Traffic from clients that retry (the same request again, as after a lost response)
    and that hold some requests back to send them after newer ones (reordering)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: list[Outcome] = []
        self.rnd = random.Random(kwargs.get("seed"))

    async def send(self, outcome: Outcome) -> Outcome:
        if outcome.client_ts is not None and self.rnd.random() < 0.2:
            # Send a late copy, older than what the reader sent since, further on.
            self.held.append(outcome)
        elif self.held and self.rnd.random() < 0.2:
            late = self.held.pop(0)
            await super().send(_again(late))
        result = await super().send(outcome)
        if self.rnd.random() < 0.3:
            await super().send(_again(outcome))
        return result


def _again(o: Outcome) -> Outcome:
    return Outcome(o.op, o.article_id, o.user_id, o.reaction, o.client_ts, time.monotonic())


async def _scripted(votes: VoteClient) -> list[Outcome]:
    """A fixed script of duplicates and stale events on one article, sent in order."""
    outcomes: list[Outcome] = []

    async def send(user: str, reaction: str | None, client_ts: int | None = None) -> None:
        if reaction is None:
            response = await votes.clear("script-1", user)
        else:
            response = await votes.set("script-1", user, reaction, client_ts)
        assert response.status_code == 202, response.text
        op = "set" if reaction else "clear"
        outcomes.append(
            Outcome(
                op,
                "script-1",
                user,
                reaction,
                client_ts,
                time.monotonic(),
                status=202,
                event_id=response.json()["event_id"],
            )
        )

    await asyncio.gather(*(send("a.u1", "love") for _ in range(3)))  # concurrent duplicates
    await send("a.u2", "angry")
    await send("a.u2", None)
    await send("a.u2", None)  # clearing twice
    await send("a.u3", "like", 200)
    await send("a.u3", "sad", 100)  # stale: older than the applied one
    await send("a.u4", "wow", 300)
    await send("a.u4", None)  # no client_ts: applies, moves the stored client_ts to 301
    await send("a.u4", "funny", 250)  # still stale
    await send("a.u5", None)  # clearing what was never set
    await send("a.u6", "love", 10)
    await send("a.u6", "love", 10)  # a retry of the same request
    return outcomes


@pytest.mark.faults_full
async def test_client_retries_and_reordering_end_in_the_model_state(rig: Rig) -> None:
    ingest = rig.start("ingest")
    rig.start("aggregator")
    reader = rig.start("reader")
    async with VoteClient(ingest.url, reader.url, timeout=30, tokens=rig.tokens) as votes:
        scripted = await _scripted(votes)
        async with RetryingTraffic(
            ingest.url, tokens=rig.tokens, articles=30, readers=40, seed=41
        ) as traffic:
            await wait_for_outcomes(traffic, 1000)
        report = await rig.oracle([*scripted, *traffic.outcomes])
        assert report.model.stale_offsets, "the traffic had events arrive out of order"

        script = report.model.articles["script-1"]
        assert script.counts == {"love": 2, "like": 1}
        assert script.readers == {
            "a.u1": "love",
            "a.u3": "like|200",
            "a.u4": "|301",
            "a.u6": "love|10",
        }
        # The reader service serves the same state.
        tally = (await votes.tally("script-1")).json()
        assert tally["total"] == 3
        assert {k: v for k, v in tally["counts"].items() if v} == script.counts


def _compacted(records: list[TopicRecord]) -> list[TopicRecord]:
    """What log compaction leaves: the last record of each key, in log order."""
    last = {r.key: r for r in records}
    return sorted(last.values(), key=lambda r: (r.partition, r.offset))


@pytest.mark.faults_full
async def test_stale_events_leave_the_compacted_log_true(rig: Rig) -> None:
    ingest = rig.start("ingest")
    rig.start("aggregator")
    async with RetryingTraffic(
        ingest.url, tokens=rig.tokens, articles=20, readers=30, client_ts_share=0.8, seed=43
    ) as traffic:
        await wait_for_outcomes(traffic, 800)
    report = await rig.oracle(traffic.outcomes)
    assert report.model.stale_offsets, "some events arrived stale"
    # DESIGN guarantee 4: after an ignored stale event the aggregator appends a record that
    # restates the reader's reaction, so rebuilding from the compacted log gives the same
    # reactions as the live view.
    live = report.model.articles
    rebuilt = model(_compacted(report.records)).articles
    wrong = {
        article: (view.counts, rebuilt[article].counts if article in rebuilt else None)
        for article, view in live.items()
        if article not in rebuilt or rebuilt[article].counts != view.counts
    }
    assert not wrong, f"(live, rebuilt from the compacted log) differ: {wrong}"
