"""Trending: the articles with the most net reactions of a type within a window."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import ORJSONResponse, Response
from pydantic import BaseModel

from services.reader.deps import ReactionsDep, TrendingDep
from services.reader.responses import ERRORS, redis_unavailable_as_503
from services.reader.trending import MAX_LIMIT
from shared.http import ApiError

router = APIRouter()


class TrendingArticle(BaseModel):
    article_id: str
    count: int


class TrendingBody(BaseModel):
    reaction: str
    window: str
    articles: list[TrendingArticle]


@router.get(
    "/v1/trending",
    response_model=None,
    responses={200: {"model": TrendingBody}, **ERRORS},
)
async def get_trending(
    trending: TrendingDep,
    reactions: ReactionsDep,
    reaction: Annotated[str, Query(description="A configured reaction type, or `all`.")] = "all",
    window: Annotated[Literal["5m", "1h", "24h"], Query()] = "1h",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
) -> Response:
    """The articles with the most net reactions of a type within a window."""
    if reaction != "all" and reaction not in reactions:
        raise ApiError(
            422,
            "invalid_reaction",
            f"reaction must be 'all' or one of: {', '.join(reactions.ids)}.",
        )
    with redis_unavailable_as_503():
        top = await trending.top(reaction, window, limit)
    return ORJSONResponse(
        {
            "reaction": reaction,
            "window": window,
            "articles": [{"article_id": a, "count": c} for a, c in top],
        },
        headers={"Cache-Control": "public, max-age=5"},
    )
