"""A reader's own reactions, with a reader token: the one private read of the widget.

Counts, seq and `mine` of each article come from one moment (one Redis script per
article, all in one round trip), so the widget can tell whether the counts include its
reader's last vote. Never cached anywhere: `private, no-store`.
"""

from __future__ import annotations

from typing import Final

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import Counter
from pydantic import BaseModel, Field

from services.reader.deps import StoreDep, VerifierDep
from services.reader.responses import ERRORS, PRIVATE_CACHE, redis_unavailable_as_503
from services.reader.routes.tallies import SEQ_DESCRIPTION, parse_bulk_ids
from shared.http import BEARER_SCHEME, UNAUTHORIZED_RESPONSE, authenticate
from shared.params import ArticleIdsQuery

OWN_READS: Final = Counter(
    "reactions_reader_own_reads_total", "Own-vote reads answered (GET /v1/me/reactions, 200)."
)

router = APIRouter()


class MineEntry(BaseModel):
    mine: str | None = Field(description="The reader's reaction, or null.")
    counts: dict[str, int]
    total: int
    seq: int = Field(ge=-1, description=SEQ_DESCRIPTION)


class MineBody(BaseModel):
    """The token's reader and, per article, their reaction with the tally it is part of."""

    reader_id: str
    articles: dict[str, MineEntry]


@router.get(
    "/v1/me/reactions",
    response_model=None,
    responses={200: {"model": MineBody}, 401: UNAUTHORIZED_RESPONSE, **ERRORS},
    openapi_extra={"security": [{BEARER_SCHEME: []}]},
)
async def get_my_reactions(
    request: Request, store: StoreDep, verifier: VerifierDep, ids: ArticleIdsQuery
) -> Response:
    """The token's reader's own reactions on up to 100 articles, with their tallies."""
    reader = authenticate(request.headers.get("authorization"), verifier)
    article_ids = parse_bulk_ids(ids)
    with redis_unavailable_as_503():
        tallies, mines = await store.snapshot(article_ids, reader.reader_id)
    articles = {
        article_id: {"mine": mine, **store.entry(tally)}
        for article_id, tally, mine in zip(article_ids, tallies, mines, strict=True)
    }
    OWN_READS.inc()
    body = orjson.dumps({"reader_id": reader.reader_id, "articles": articles})
    # Vary: a shared cache that ignores no-store must still never mix two readers.
    headers = {"Cache-Control": PRIVATE_CACHE, "Vary": "Authorization"}
    return Response(body, media_type="application/json", headers=headers)
