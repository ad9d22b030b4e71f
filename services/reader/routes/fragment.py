"""One article's bar as server-rendered HTML, cacheable like the JSON tally: each language,
threshold and subset of types is its own URL.

No `from __future__ import annotations` here: the `types` parameter is documented with the
configured ids, built per app, and FastAPI resolves a string annotation in the module's
globals only.
"""

import re
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from services.reader.deps import AssetsDep, ReactionsDep, StoreDep
from services.reader.fragment import render_bar
from services.reader.locale import LangQuery, served_lang
from services.reader.responses import (
    ERRORS,
    PUBLIC_CACHE,
    USER_ID_REFUSED,
    redis_unavailable_as_503,
    refuse_user_id,
    validated_response,
)
from shared.http import ApiError
from shared.params import ArticleIdPath, check_article_id
from shared.reactions import ReactionSet, ReactionType

HTML: Final = "text/html; charset=utf-8"
MAX_THRESHOLD: Final = 1_000_000_000

HideCountsBelow = Annotated[
    int,
    Query(
        alias="hide-counts-below",
        ge=0,
        le=MAX_THRESHOLD,
        description="A count below this shows no number (0: every count shows).",
    ),
]


def shown_types(reactions: ReactionSet, types: str | None) -> list[ReactionType]:
    """The configured types `?types=` names, in display order; all of them without it."""
    if types is None:
        return list(reactions.types)
    named = {name for name in types.split(",") if name}
    unknown = sorted(named - set(reactions.ids))
    if not named or unknown:
        raise ApiError(
            422,
            "invalid_types",
            "types must list configured reaction types, comma-separated: "
            f"{', '.join(reactions.ids)}.",
        )
    return [t for t in reactions.types if t.id in named]


def router_for(reactions: ReactionSet) -> APIRouter:
    """The fragment route, its `types` parameter documented as the configured types."""
    router = APIRouter()
    one = "(" + "|".join(re.escape(i) for i in reactions.ids) + ")"
    TypesQuery = Annotated[
        str | None,
        Query(
            description="Only these configured types, comma-separated (shown in display "
            "order); all of them without it.",
            json_schema_extra={"pattern": f"^,*{one}(,+{one})*,*$"},
        ),
    ]

    @router.get(
        "/v1/articles/{article_id}/reactions.html",
        response_model=None,
        responses={
            200: {"content": {"text/html": {}}, "description": "The bar as HTML."},
            304: {"description": "Not modified."},
            **USER_ID_REFUSED,
            **ERRORS,
        },
    )
    async def get_bar_html(
        article_id: ArticleIdPath,
        request: Request,
        store: StoreDep,
        assets: AssetsDep,
        configured: ReactionsDep,
        lang: LangQuery = None,
        hide_counts_below: HideCountsBelow = 0,
        types: TypesQuery = None,
    ) -> Response:
        """One article's bar as HTML with its counts, to include inside `<reaction-bar>`."""
        refuse_user_id(request)
        check_article_id(article_id)
        served = served_lang(configured, lang)
        shown = shown_types(configured, types)
        with redis_unavailable_as_503():
            tally = (await store.tally(article_id)).tally
        body = render_bar(
            article_id, tally, configured, shown, served, hide_counts_below, assets.bar_css
        )
        headers = {"Cache-Control": PUBLIC_CACHE, "Content-Language": served}
        return validated_response(request, body, HTML, headers)

    return router
