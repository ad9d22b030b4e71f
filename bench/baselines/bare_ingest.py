"""The HTTP ceiling of the write path: parse and check the same vote body, answer 202, and
store nothing. The ingest service's ratio to this is the cost of Kafka and of its features
(the token's signature check among them: here the token is only required to be there)."""

from __future__ import annotations

import uuid

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import ORJSONResponse, Response

from bench.baselines.serve import serve
from shared.events import valid_article_id, valid_client_ts
from shared.reactions import DEFAULT_TYPES

REACTIONS = frozenset(DEFAULT_TYPES)


def create_app() -> FastAPI:
    """POST parses and validates like ingest, then answers 202 without producing anything."""
    app = FastAPI(default_response_class=ORJSONResponse)

    @app.get("/readyz")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v1/votes", status_code=202)
    async def vote(request: Request) -> Response:
        body = orjson.loads(await request.body())
        ok = (
            request.headers.get("authorization", "").startswith("Bearer ")
            and isinstance(body, dict)
            and isinstance(body.get("article_id"), str)
            and valid_article_id(body["article_id"])
            and body.get("reaction") in REACTIONS
            and (body.get("client_ts") is None or valid_client_ts(body["client_ts"]))
        )
        if not ok:
            return ORJSONResponse({"error": {"code": "invalid", "message": "Bad."}}, 422)
        return ORJSONResponse({"accepted": True, "event_id": str(uuid.uuid4()), "seq": 0}, 202)

    return app


if __name__ == "__main__":
    serve(create_app(), "bare_ingest")
