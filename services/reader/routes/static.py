"""The reaction-type config, the embeddable widget and the demo page."""

from __future__ import annotations

import html
from typing import Final, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.reader.deps import AssetsDep, ReactionsDep, SettingsDep
from services.reader.locale import LangQuery, served_lang
from services.reader.responses import etag_matches, validated_response
from shared.http import ErrorBody
from shared.params import ArticleIdQuery, check_article_id

DEMO_ARTICLE: Final = "demo-night-market"
WIDGET_CACHE: Final = "public, max-age=300"
CONFIG_CACHE: Final = "public, max-age=60"

router = APIRouter()


class ReactionTypeBody(BaseModel):
    id: str
    label: str
    emoji: str


class ConfigBody(BaseModel):
    """The reaction types in display order, labelled in the language served."""

    lang: str = Field(description="The language served: the closest configured to ?lang=.")
    dir: Literal["ltr", "rtl"]
    group_label: str = Field(description="The bar's accessible name in that language.")
    reactions: list[ReactionTypeBody]


@router.get(
    "/v1/config",
    response_model=None,
    responses={
        200: {"model": ConfigBody},
        304: {"description": "Not modified."},
        422: {"model": ErrorBody, "description": "lang is not a language tag."},
    },
)
async def get_config(
    request: Request, assets: AssetsDep, reactions: ReactionsDep, lang: LangQuery = None
) -> Response:
    """The configured reaction types in display order, labelled in the language asked for."""
    body = assets.config_bodies[served_lang(reactions, lang)]
    return validated_response(request, body, "application/json", {"Cache-Control": CONFIG_CACHE})


@router.get(
    "/widget.js",
    response_model=None,
    responses={200: {"content": {"text/javascript": {}}, "description": "The widget."}},
)
async def get_widget(request: Request, assets: AssetsDep) -> Response:
    """The embeddable `<reaction-bar>` widget."""
    etag = assets.widget_etag
    headers = {"Cache-Control": WIDGET_CACHE, "Vary": "Accept-Encoding", "ETag": etag}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        body = assets.widget_gz
    else:
        body = assets.widget_js
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


@router.get(
    "/demo",
    response_model=None,
    responses={200: {"content": {"text/html": {}}, "description": "A demo article page."}},
)
async def get_demo(
    request: Request,
    assets: AssetsDep,
    settings: SettingsDep,
    article: ArticleIdQuery = DEMO_ARTICLE,
) -> Response:
    """A demo article page with the widget under the story and on each 'more stories' item."""
    check_article_id(article)
    host = request.url.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    ingest = settings.public_ingest_url or (f"{request.url.scheme}://{host}:{settings.ingest_port}")
    page = assets.demo_template.replace(
        "{{INGEST_URL}}", html.escape(ingest.rstrip("/"), quote=True)
    ).replace("{{ARTICLE}}", article)
    return Response(
        page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"}
    )
