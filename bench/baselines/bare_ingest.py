"""The HTTP ceiling of the write path: parse and check the same PUT body, answer 202, and
store nothing. The ingest service's ratio to this is the cost of Kafka and of its features."""

from __future__ import annotations

import uuid

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import ORJSONResponse, Response

from bench.baselines.serve import serve
from shared.events import valid_article_id, valid_client_ts, valid_user_id
from shared.reactions import DEFAULT_TYPES

REACTIONS = frozenset(DEFAULT_TYPES)


def create_app() -> FastAPI:
    """PUT parses and validates like ingest, then answers 202 without producing anything."""
    app = FastAPI(default_response_class=ORJSONResponse)

    @app.get("/readyz")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.put("/v1/articles/{article_id}/reactions/{user_id}", status_code=202)
    async def set_reaction(article_id: str, user_id: str, request: Request) -> Response:
        body = orjson.loads(await request.body())
        ok = (
            valid_article_id(article_id)
            and valid_user_id(user_id)
            and isinstance(body, dict)
            and body.get("reaction") in REACTIONS
            and (body.get("client_ts") is None or valid_client_ts(body["client_ts"]))
        )
        if not ok:
            return ORJSONResponse({"error": {"code": "invalid", "message": "Bad."}}, 422)
        return ORJSONResponse({"accepted": True, "event_id": str(uuid.uuid4())}, 202)

    return app


if __name__ == "__main__":
    serve(create_app(), "bare_ingest")
