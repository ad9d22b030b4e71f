"""The fast path for votes (services/ingest/fast.py) answers as the app's route does: same
status, body shape and headers (CORS included) for accepted votes and for every kind of
refusal, counted in the same request metrics; other requests reach the app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from deploy.local.client import MintedTokens
from deploy.local.kafka import KafkaBroker
from deploy.local.keys import DevelopmentKeys
from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from services.ingest.deps import IngestState
from services.ingest.fast import FastVotes
from shared.metrics import render_metrics

ORIGIN = "https://news.example"
# Headers whose values differ from one answer to the next by nature.
VARYING = {"content-length"}


def _with_state(app: ASGIApp, state: IngestState) -> ASGIApp:
    """`app` with the lifespan's state in each request's scope, as uvicorn passes it."""

    async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    return with_state


@pytest.fixture
async def both(
    kafka: KafkaBroker, token_keys: DevelopmentKeys
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(the app alone, the app behind FastVotes), sharing one lifespan."""
    settings = IngestSettings(
        kafka_bootstrap=kafka.bootstrap,
        topic=f"fast-{uuid.uuid4().hex[:8]}",
        partitions=2,
        token_signing_key_file=token_keys.signing_key_file,
        token_public_keys_file=token_keys.public_keys_file,
        allowed_origins=ORIGIN,
        rate_limit_reader="3/minute",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app) as state:
        plain = _with_state(app, state)
        fast = _with_state(FastVotes(app, settings.origins), state)
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=plain), base_url="http://ingest"
            ) as via_app,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=fast), base_url="http://ingest"
            ) as via_fast,
        ):
            yield via_app, via_fast


def _shape(response: httpx.Response) -> tuple[int, dict[str, str], object]:
    """Status, headers (but those that vary) and the body with per-vote values masked."""
    headers = {k: v for k, v in response.headers.items() if k not in VARYING}
    body = response.json()
    if isinstance(body, dict) and "event_id" in body:
        body = {**body, "event_id": "…", "seq": "…"}
    return response.status_code, headers, body


async def test_fast_path_answers_every_case_as_the_route_does(
    both: tuple[httpx.AsyncClient, httpx.AsyncClient], tokens: MintedTokens
) -> None:
    via_app, via_fast = both
    vote = orjson.dumps({"article_id": "a1", "reaction": "like", "client_ts": 5})
    json = {"Content-Type": "application/json"}
    cases: list[tuple[str, dict[str, str], bytes]] = [
        ("accepted", json, vote),
        ("accepted, from an allowed origin", {**json, "Origin": ORIGIN}, vote),
        ("from another origin", {**json, "Origin": "https://elsewhere.example"}, vote),
        ("not json", {"Content-Type": "text/plain"}, vote),
        ("malformed", json, b"{"),
        ("too large", json, b" " * 2000),
        ("unknown field", json, b'{"article_id": "a1", "user_id": "x"}'),
        ("no reaction", json, b'{"article_id": "a1"}'),
        ("bad article", json, b'{"article_id": "", "reaction": "like"}'),
    ]
    for number, (name, headers, body) in enumerate(cases):
        # A reader per case: each sends two votes, within the 3 a minute allowed here.
        auth = {"Authorization": f"Bearer {tokens.token(f'a.fast-{number}')}"}
        a = await via_app.post("/v1/votes", headers={**headers, **auth}, content=body)
        f = await via_fast.post("/v1/votes", headers={**headers, **auth}, content=body)
        assert _shape(f) == _shape(a), name
    for name, auth in (
        ("no token", {}),
        ("a bad token", {"Authorization": "Bearer x.y.z"}),
        ("not bearer", {"Authorization": "Basic eDp5"}),
    ):
        a = await via_app.post("/v1/votes", headers={**json, **auth}, content=vote)
        f = await via_fast.post("/v1/votes", headers={**json, **auth}, content=vote)
        assert a.status_code == 401 and _shape(f) == _shape(a), name
    # The route and the fast path share the limits: a reader's fourth vote in a minute is
    # refused alike, Retry-After and all.
    auth = {"Authorization": f"Bearer {tokens.token('a.fast-limited')}"}
    headers = {**json, **auth, "Origin": ORIGIN}
    for client in (via_app, via_fast, via_app):
        assert (await client.post("/v1/votes", headers=headers, content=vote)).status_code == 202
    a = await via_app.post("/v1/votes", headers=headers, content=vote)
    f = await via_fast.post("/v1/votes", headers=headers, content=vote)
    assert a.status_code == 429
    assert _shape(f) == _shape(a)


async def test_fast_path_counts_in_the_request_metrics_and_hands_on_the_rest(
    both: tuple[httpx.AsyncClient, httpx.AsyncClient], tokens: MintedTokens
) -> None:
    _, via_fast = both

    def answered(status: str) -> float:
        text = render_metrics()[0].decode()
        prefix = (
            f'reactions_http_requests_total{{method="POST",route="/v1/votes",status="{status}"}} '
        )
        return sum(
            float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)
        )

    before_202, before_415 = answered("202"), answered("415")
    auth = {"Authorization": f"Bearer {tokens.token('a.fast-2')}"}
    vote = {"article_id": "a2", "reaction": "love"}
    assert (await via_fast.post("/v1/votes", headers=auth, json=vote)).status_code == 202
    refused = await via_fast.post("/v1/votes", headers=auth, content=b"{}")
    assert refused.status_code == 415
    assert answered("202") == before_202 + 1
    assert answered("415") == before_415 + 1
    # Not a vote: the app answers (its 404 and 405 in the contract's shape, its health).
    assert (await via_fast.get("/healthz")).json() == {"status": "ok"}
    missing = await via_fast.post("/v1/votes/", headers=auth, json=vote)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = await via_fast.get("/v1/votes")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
