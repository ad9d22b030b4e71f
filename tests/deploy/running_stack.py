"""The three services running for the deploy tests, and the traffic that gives their
labelled metrics children."""

from __future__ import annotations

import httpx

from deploy.local.client import SyncVoteClient, TokenSource
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


def drive_traffic(services: dict[str, Service], tokens: TokenSource) -> None:
    """A new reader, a set, a move and a clear through ingest, a refused token, then reads
    (public and own) until the aggregator applied them."""
    with SyncVoteClient(services["ingest"].url, services["reader"].url, tokens=tokens) as votes:
        assert votes.new_reader().status_code == 201
        assert votes.new_reader("not-a-token").status_code == 401
        for user, reaction in (("a.u1", "love"), ("a.u2", "wow"), ("a.u1", "angry")):
            response = votes.set("ops-1", user, reaction)
            assert response.status_code == 202, response.text
        assert votes.clear("ops-1", "a.u2").status_code == 202

        def applied() -> bool:
            body = votes.mine(["ops-1"], "a.u1")
            return bool(body.status_code == 200 and body.json()["articles"]["ops-1"]["total"] == 1)

        wait_until(applied, timeout=60, what="the aggregator to apply the reactions")
