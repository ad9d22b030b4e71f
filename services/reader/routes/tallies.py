"""Public tallies: one article's, or up to 100 articles' in one Redis round trip. They never
carry identity (a reader's own reactions are read with a token: routes/me.py), so any
cache may keep them."""

from __future__ import annotations

import re
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.reader.deps import StoreDep
from services.reader.responses import (
    ERRORS,
    PUBLIC_CACHE,
    USER_ID_REFUSED,
    redis_unavailable_as_503,
    refuse_user_id,
    validated_response,
)
from shared.events import ARTICLE_ID_MESSAGE, valid_article_id
from shared.http import ApiError
from shared.params import ARTICLE_IDS_PATTERN, ArticleIdPath, ArticleIdsQuery, check_article_id

MAX_BULK_IDS: Final = 100
_VALID_IDS: Final = re.compile(ARTICLE_IDS_PATTERN).fullmatch
SEQ_DESCRIPTION: Final = (
    "The offset of the last event applied to the article (-1 when none): a vote whose 202 "
    "carried seq S is included in every tally whose seq is S or more."
)

PUBLIC_HEADERS: Final = {"Cache-Control": PUBLIC_CACHE}

router = APIRouter()


class TallyBody(BaseModel):
    """One article's zero-filled counts, total and seq."""

    article_id: str
    counts: dict[str, int] = Field(examples=[{"like": 3, "love": 1}])
    total: int
    seq: int = Field(ge=-1, description=SEQ_DESCRIPTION)


class BulkEntry(BaseModel):
    counts: dict[str, int]
    total: int
    seq: int = Field(ge=-1, description=SEQ_DESCRIPTION)


class BulkBody(BaseModel):
    """Tallies of several articles, keyed by article id (duplicates answered once)."""

    articles: dict[str, BulkEntry]


def parse_bulk_ids(raw: str) -> list[str]:
    """Distinct article ids of `?ids=`, in order; empty items (a trailing comma) are ignored."""
    ids = list(dict.fromkeys([i for i in raw.split(",") if i]))
    if not ids:
        raise ApiError(422, "invalid_ids", "ids must list 1 to 100 article ids, comma-separated.")
    if len(ids) > MAX_BULK_IDS:
        raise ApiError(
            422, "too_many_ids", f"ids lists {len(ids)} articles; at most {MAX_BULK_IDS} per call."
        )
    # One scan of the whole list (a third of the cost of one per id); the id at fault is
    # looked for only when it fails.
    if _VALID_IDS(raw) is not None:
        return ids
    for article_id in ids:
        if not valid_article_id(article_id):
            shown = article_id if len(article_id) <= 40 else article_id[:40] + "…"
            raise ApiError(422, "invalid_article_id", f"{shown!r}: {ARTICLE_ID_MESSAGE}")
    return ids


@router.get(
    "/v1/articles/{article_id}/reactions",
    response_model=None,
    responses={
        200: {"model": TallyBody},
        304: {"description": "Not modified."},
        **USER_ID_REFUSED,
        **ERRORS,
    },
)
async def get_tally(article_id: ArticleIdPath, request: Request, store: StoreDep) -> Response:
    """The zero-filled tally of one article."""
    refuse_user_id(request)
    check_article_id(article_id)
    with redis_unavailable_as_503():
        tally = await store.tally(article_id)
    return validated_response(
        request, tally.body, "application/json", PUBLIC_HEADERS, tally.etag.decode()
    )


@router.get(
    "/v1/reactions",
    response_model=None,
    responses={
        200: {"model": BulkBody},
        304: {"description": "Not modified."},
        **USER_ID_REFUSED,
        **ERRORS,
    },
)
async def get_tallies(request: Request, store: StoreDep, ids: ArticleIdsQuery) -> Response:
    """Tallies of up to 100 articles (a front page) in one Redis round trip."""
    refuse_user_id(request)
    article_ids = parse_bulk_ids(ids)
    with redis_unavailable_as_503():
        body, etag = await store.bulk(article_ids)
    return validated_response(request, body, "application/json", PUBLIC_HEADERS, etag.decode())
