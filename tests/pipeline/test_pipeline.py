"""The whole pipeline through the three real services: a token from POST /v1/readers → vote
→ Kafka → aggregator → Redis → public GET and the reader's own read, with seq."""

from __future__ import annotations

from typing import Any

import httpx

from deploy.local.client import MintedTokens, VoteClient
from deploy.local.services import Service
from tests.support import ServiceFactory, eventually

ZEROS = dict.fromkeys(["like", "dislike", "love", "funny", "angry", "sad", "wow"], 0)


async def test_reactions_flow_from_a_vote_to_the_tallies(
    pipeline: tuple[Service, Service], tokens: MintedTokens
) -> None:
    ingest, reader = pipeline

    async with VoteClient(ingest.url, reader.url, tokens=tokens) as votes:
        # A browser's reader: its token from ingest, its id from the token.
        issued = await votes.new_reader()
        assert issued.status_code == 201, issued.text
        browser = issued.json()

        async def react(user: str, reaction: str | None) -> int:
            if user == "browser":
                response = await votes.vote(browser["token"], "story-1", reaction)
            elif reaction is None:
                response = await votes.clear("story-1", user)
            else:
                response = await votes.set("story-1", user, reaction)
            assert response.status_code == 202, response.text
            assert response.json()["accepted"] is True
            seq: int = response.json()["seq"]
            return seq

        await react("browser", "love")
        await react("a.u2", "angry")
        await react("a.u3", "love")
        await react("a.u3", "love")  # the same reaction again changes nothing
        await react("browser", "angry")  # moves the browser's vote from love to angry
        await react("a.u2", None)  # clears u2's vote
        last = await react("a.u4", None)  # clearing nothing changes nothing

        async def tally() -> dict[str, Any]:
            response = await votes.tally("story-1")
            assert response.status_code == 200
            body: dict[str, Any] = response.json()
            return body

        body = await eventually(tally, lambda b: b["seq"] >= last, what="the tally to settle")
        assert body["counts"] == {**ZEROS, "love": 1, "angry": 1}
        assert body["total"] == 2
        assert body["seq"] == last  # the last event applied to the article is the last vote

        mine = await votes.send(votes.api.mine(browser["token"], ["story-1", "never-seen"]))
        assert mine.status_code == 200, mine.text
        assert mine.json() == {
            "reader_id": browser["reader_id"],
            "articles": {
                "story-1": {"mine": "angry", **{k: body[k] for k in ("counts", "total", "seq")}},
                "never-seen": {"mine": None, "counts": ZEROS, "total": 0, "seq": -1},
            },
        }
        assert (await votes.mine(["story-1"], "a.u2")).json()["articles"]["story-1"]["mine"] is None

        unseen = await votes.tally("never-seen")
        assert unseen.json() == {
            "article_id": "never-seen",
            "counts": ZEROS,
            "total": 0,
            "seq": -1,
        }


async def test_every_service_has_ops_endpoints(start_service: ServiceFactory) -> None:
    services = [start_service(name) for name in ("ingest", "aggregator", "reader")]
    async with httpx.AsyncClient(timeout=10) as http:
        for service in services:
            assert (await http.get(f"{service.url}/healthz")).status_code == 200
            ready = await http.get(f"{service.url}/readyz")
            assert ready.status_code == 200, ready.text
            metrics = await http.get(f"{service.url}/metrics")
            assert metrics.status_code == 200
            assert "text/plain" in metrics.headers["content-type"]


async def test_identities_rotated_from_one_address_are_limited_and_each_counts_once(
    start_service: ServiceFactory,
) -> None:
    ingest = start_service("ingest", env={"REACTIONS_RATE_LIMIT_TOKENS": "3/hour"})
    start_service("aggregator")
    reader = start_service("reader")
    async with VoteClient(ingest.url, reader.url) as votes:
        tokens = []
        for _ in range(3):
            issued = await votes.new_reader()
            assert issued.status_code == 201, issued.text
            tokens.append(issued.json()["token"])
        assert (await votes.new_reader()).status_code == 429
        last = 0
        for token in tokens:
            for _ in range(2):  # the same vote twice counts once
                response = await votes.vote(token, "stuffed", "love")
                assert response.status_code == 202, response.text
                last = max(last, response.json()["seq"])

        async def tally() -> dict[str, Any]:
            body: dict[str, Any] = (await votes.tally("stuffed")).json()
            return body

        body = await eventually(tally, lambda b: b["seq"] >= last, what="every vote applied")
        assert body["counts"]["love"] == 3 and body["total"] == 3
