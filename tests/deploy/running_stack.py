"""The three services running for the deploy tests, and the traffic that gives their
labelled metrics children."""

from __future__ import annotations

import httpx

from deploy.local.client import SyncVoteClient
from deploy.local.services import Service
from tests.support import wait_until


class RunningStack:
    """The three services, started once for the package, and their /metrics texts."""

    def __init__(self, services: dict[str, Service]) -> None:
        self.services = services

    def metrics_text(self, name: str) -> str:
        response = httpx.get(f"{self.services[name].url}/metrics", timeout=10)
        response.raise_for_status()
        return response.text


def drive_traffic(services: dict[str, Service]) -> None:
    """A set, a move and a clear through ingest, then reads until the aggregator applied them."""
    with SyncVoteClient(services["ingest"].url, services["reader"].url) as votes:
        for user, reaction in (("u1", "love"), ("u2", "wow"), ("u1", "angry")):
            response = votes.set("ops-1", user, reaction)
            assert response.status_code == 202, response.text
        assert votes.clear("ops-1", "u2").status_code == 202

        def applied() -> bool:
            body = votes.tally("ops-1", "u1")
            return bool(body.status_code == 200 and body.json()["total"] == 1)

        wait_until(applied, timeout=60, what="the aggregator to apply the reactions")
