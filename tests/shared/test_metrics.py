"""Request metrics label requests by route template, for routes of included routers too."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from shared.metrics import HTTP_REQUESTS, RequestMetrics


def requests_of(route: str, status: str) -> float:
    return HTTP_REQUESTS.labels(route, "GET", status)._value.get()


def test_routes_of_included_routers_are_labelled_by_template() -> None:
    router = APIRouter()

    @router.get("/v1/things/{thing_id}/metrics-probe")
    async def thing(thing_id: str) -> dict[str, str]:
        return {"id": thing_id}

    app = FastAPI()
    app.include_router(router)
    app.add_middleware(RequestMetrics)
    template = "/v1/things/{thing_id}/metrics-probe"
    before_ok = requests_of(template, "200")
    before_unmatched = requests_of("unmatched", "404")
    client = TestClient(app)
    assert client.get("/v1/things/a/metrics-probe").status_code == 200
    assert client.get("/v1/things/b/metrics-probe").status_code == 200
    assert client.get("/nowhere").status_code == 404
    assert requests_of(template, "200") == before_ok + 2
    assert requests_of("unmatched", "404") == before_unmatched + 1
