"""Tallies: one article's, or up to 100 articles' in one Redis round trip."""

from __future__ import annotations

from typing import Annotated, Final

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.reader.deps import StoreDep
from services.reader.responses import (
    ERRORS,
    PRIVATE_CACHE,
    PUBLIC_CACHE,
    redis_unavailable_as_503,
    validated_response,
)
from shared.events import ARTICLE_ID_MESSAGE, valid_article_id
from shared.http import ApiError
from shared.params import ArticleIdPath, UserIdQuery, check_article_id, check_user_id

MAX_BULK_IDS: Final = 100

router = APIRouter()


class TallyBody(BaseModel):
    """One article's zero-filled counts; `mine` only when `user_id` was given."""

    article_id: str
    counts: dict[str, int] = Field(examples=[{"like": 3, "love": 1}])
    total: int
    mine: str | None = Field(None, description="Present only with user_id.")


class BulkEntry(BaseModel):
    counts: dict[str, int]
    total: int
    mine: str | None = Field(None, description="Present only with user_id.")


class BulkBody(BaseModel):
    """Tallies of several articles, keyed by article id (duplicates answered once)."""

    articles: dict[str, BulkEntry]


def parse_bulk_ids(raw: str) -> list[str]:
    """Distinct article ids of `?ids=`, in order; empty items (a trailing comma) are ignored."""
    ids = list(dict.fromkeys(i for i in raw.split(",") if i))
    if not ids:
        raise ApiError(422, "invalid_ids", "ids must list 1 to 100 article ids, comma-separated.")
    if len(ids) > MAX_BULK_IDS:
        raise ApiError(
            422, "too_many_ids", f"ids lists {len(ids)} articles; at most {MAX_BULK_IDS} per call."
        )
    for article_id in ids:
        if not valid_article_id(article_id):
            shown = article_id if len(article_id) <= 40 else article_id[:40] + "…"
            raise ApiError(422, "invalid_article_id", f"{shown!r}: {ARTICLE_ID_MESSAGE}")
    return ids


@router.get(
    "/v1/articles/{article_id}/reactions",
    response_model=None,
    responses={200: {"model": TallyBody}, 304: {"description": "Not modified."}, **ERRORS},
)
async def get_tally(
    article_id: ArticleIdPath, request: Request, store: StoreDep, user_id: UserIdQuery = None
) -> Response:
    """The zero-filled tally of one article, and the reader's own choice with user_id."""
    check_article_id(article_id)
    check_user_id(user_id)
    with redis_unavailable_as_503():
        body = await store.render(article_id, user_id)
    cache = PUBLIC_CACHE if user_id is None else PRIVATE_CACHE
    return validated_response(request, body, "application/json", {"Cache-Control": cache})


@router.get(
    "/v1/reactions",
    response_model=None,
    responses={200: {"model": BulkBody}, 304: {"description": "Not modified."}, **ERRORS},
)
async def get_tallies(
    request: Request,
    store: StoreDep,
    ids: Annotated[
        str, Query(description="Up to 100 article ids, comma-separated; duplicates ignored.")
    ],
    user_id: UserIdQuery = None,
) -> Response:
    """Tallies of up to 100 articles (a front page) in one Redis round trip."""
    article_ids = parse_bulk_ids(ids)
    check_user_id(user_id)
    with redis_unavailable_as_503():
        entries = await store.entries(article_ids, user_id)
    body = orjson.dumps({"articles": dict(zip(article_ids, entries, strict=True))})
    cache = PUBLIC_CACHE if user_id is None else PRIVATE_CACHE
    return validated_response(request, body, "application/json", {"Cache-Control": cache})
