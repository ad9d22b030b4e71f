"""The whole pipeline through the three real services: PUT → Kafka → aggregator → Redis → GET."""

from __future__ import annotations

from typing import Any

import httpx

from deploy.local.client import VoteClient
from tests.support import ServiceFactory, eventually


async def test_reactions_flow_from_put_to_get(start_service: ServiceFactory) -> None:
    ingest = start_service("ingest")
    start_service("aggregator")
    reader = start_service("reader")

    async with VoteClient(ingest.url, reader.url) as votes:

        async def react(user: str, reaction: str | None) -> None:
            if reaction is None:
                response = await votes.clear("story-1", user)
            else:
                response = await votes.set("story-1", user, reaction)
            assert response.status_code == 202, response.text
            assert response.json()["accepted"] is True

        await react("u1", "love")
        await react("u2", "angry")
        await react("u3", "love")
        await react("u3", "love")  # the same reaction again changes nothing
        await react("u1", "angry")  # moves u1's vote from love to angry
        await react("u2", None)  # clears u2's vote
        await react("u4", None)  # clearing nothing changes nothing

        async def tally() -> dict[str, Any]:
            response = await votes.tally("story-1", "u1")
            assert response.status_code == 200
            body: dict[str, Any] = response.json()
            return body

        body = await eventually(tally, lambda b: b["total"] == 2, what="the tally to settle")
        assert body["counts"] == {
            "like": 0,
            "dislike": 0,
            "love": 1,
            "funny": 0,
            "angry": 1,
            "sad": 0,
            "wow": 0,
        }
        assert body["mine"] == "angry"

        unseen = await votes.tally("never-seen")
        assert unseen.json() == {
            "article_id": "never-seen",
            "counts": dict.fromkeys(["like", "dislike", "love", "funny", "angry", "sad", "wow"], 0),
            "total": 0,
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
