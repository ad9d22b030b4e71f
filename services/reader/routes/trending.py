"""Trending: the articles with the most net reactions of a type within a window.

No `from __future__ import annotations` here: the route's `reaction` parameter is built per
app (its choices are the configured types), and FastAPI resolves a string annotation in
the module's globals only.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import ORJSONResponse, Response
from pydantic import BaseModel

from services.reader.deps import ReactionsDep, TrendingDep
from services.reader.responses import ERRORS, redis_unavailable_as_503
from services.reader.trending import MAX_LIMIT
from shared.http import ApiError
from shared.reactions import ReactionSet


class TrendingArticle(BaseModel):
    article_id: str
    count: int


class TrendingBody(BaseModel):
    reaction: str
    window: str
    articles: list[TrendingArticle]


def router_for(reactions: ReactionSet) -> APIRouter:
    """The trending route, its `reaction` parameter documented as the configured types."""
    router = APIRouter()
    ReactionQuery = Annotated[
        str,
        Query(
            description="A configured reaction type, or `all`.",
            json_schema_extra={"enum": ["all", *reactions.ids]},
        ),
    ]

    @router.get(
        "/v1/trending",
        response_model=None,
        responses={200: {"model": TrendingBody}, **ERRORS},
    )
    async def get_trending(
        trending: TrendingDep,
        configured: ReactionsDep,
        reaction: ReactionQuery = "all",
        window: Annotated[Literal["5m", "1h", "24h"], Query()] = "1h",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
    ) -> Response:
        """The articles with the most net reactions of a type within a window."""
        if reaction != "all" and reaction not in configured:
            raise ApiError(
                422,
                "invalid_reaction",
                f"reaction must be 'all' or one of: {', '.join(configured.ids)}.",
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

    return router
