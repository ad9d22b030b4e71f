"""The three services running for the deploy tests, and the traffic that gives their
labelled metrics children."""

from __future__ import annotations

import httpx

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
    ingest, reader = services["ingest"].url, services["reader"].url
    with httpx.Client(timeout=10) as http:
        for user, reaction in (("u1", "love"), ("u2", "wow"), ("u1", "angry")):
            response = http.put(
                f"{ingest}/v1/articles/ops-1/reactions/{user}", json={"reaction": reaction}
            )
            assert response.status_code == 202, response.text
        assert http.delete(f"{ingest}/v1/articles/ops-1/reactions/u2").status_code == 202

        def applied() -> bool:
            body = http.get(f"{reader}/v1/articles/ops-1/reactions", params={"user_id": "u1"})
            return bool(body.status_code == 200 and body.json()["total"] == 1)

        wait_until(applied, timeout=60, what="the aggregator to apply the reactions")
