"""The reaction-type config, the embeddable widget and the demo page."""

from __future__ import annotations

import html
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from services.reader.deps import AssetsDep, SettingsDep
from services.reader.responses import etag_matches, validated_response
from shared.params import ArticleIdQuery, check_article_id

DEMO_ARTICLE: Final = "demo-night-market"
WIDGET_CACHE: Final = "public, max-age=300"

router = APIRouter()


class ReactionTypeBody(BaseModel):
    id: str
    label: str
    emoji: str


class ConfigBody(BaseModel):
    reactions: list[ReactionTypeBody]


@router.get("/v1/config", response_model=None, responses={200: {"model": ConfigBody}})
async def get_config(request: Request, assets: AssetsDep) -> Response:
    """The configured reaction types in display order."""
    return validated_response(
        request, assets.config_body, "application/json", {"Cache-Control": "public, max-age=60"}
    )


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
