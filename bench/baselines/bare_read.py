"""The HTTP ceiling of the read path: the same routes answering fixed bytes (captured from
the reader, so the same size and shape) without touching Redis."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response

from bench.baselines.serve import serve


def create_app(tally: bytes, bulk: bytes) -> FastAPI:
    """GET routes of the reader that return `tally` and `bulk` as they are."""
    app = FastAPI()

    @app.get("/readyz")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.get("/v1/articles/{article_id}/reactions")
    async def get_tally(article_id: str) -> Response:
        return Response(tally, media_type="application/json")

    @app.get("/v1/reactions")
    async def get_bulk(ids: str = "") -> Response:
        return Response(bulk, media_type="application/json")

    return app


if __name__ == "__main__":
    serve(
        create_app(
            Path(os.environ["BENCH_TALLY_FILE"]).read_bytes(),
            Path(os.environ["BENCH_BULK_FILE"]).read_bytes(),
        ),
        "bare_read",
    )
