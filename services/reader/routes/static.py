"""The reaction-type config, the embeddable widget as a classic script and as an ES module
(each also at an immutable, versioned URL) and the demo page."""

from __future__ import annotations

import html
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.reader.assets import Script
from services.reader.deps import AssetsDep, ReactionsDep, SettingsDep
from services.reader.locale import LangQuery, served_lang
from services.reader.responses import etag_matches, validated_response
from shared.http import ApiError, ErrorBody
from shared.params import ArticleIdQuery, check_article_id

DEMO_ARTICLE: Final = "demo-night-market"
WIDGET_CACHE: Final = "public, max-age=300"
# A versioned URL names one content for ever: any cache may keep it a year, unrevalidated.
IMMUTABLE_CACHE: Final = "public, max-age=31536000, immutable"
CONFIG_CACHE: Final = "public, max-age=60"
VERSION_PATTERN: Final = r"^[0-9a-f]{16}$"

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


class ScriptBody(BaseModel):
    """Where a form of the current widget is served for good, and its Subresource Integrity
    value."""

    path: str = Field(examples=["/widget.0123456789abcdef.js"])
    integrity: str = Field(examples=["sha384-…"])
    version: str


class WidgetBody(ScriptBody):
    """The classic script's immutable URL, and the ES module's in `module`."""

    module: ScriptBody
    style_hash: str = Field(
        description="The server-rendered bar's <style> as a Content-Security-Policy "
        "hash-source, for a strict page's style-src.",
        examples=["sha256-…"],
    )


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
    "/v1/widget",
    response_model=None,
    responses={200: {"model": WidgetBody}, 304: {"description": "Not modified."}},
)
async def get_widget_version(request: Request, assets: AssetsDep) -> Response:
    """The widget's current versioned URL and its integrity value, to pin it with SRI."""
    return validated_response(
        request, assets.widget_info, "application/json", {"Cache-Control": CONFIG_CACHE}
    )


@router.get(
    "/widget.js",
    response_model=None,
    responses={200: {"content": {"text/javascript": {}}, "description": "The widget."}},
)
async def get_widget(request: Request, assets: AssetsDep) -> Response:
    """The embeddable `<reaction-bar>` widget, a classic script."""
    return script_response(request, assets.widget, WIDGET_CACHE)


@router.get(
    "/widget.mjs",
    response_model=None,
    responses={200: {"content": {"text/javascript": {}}, "description": "The widget."}},
)
async def get_widget_module(request: Request, assets: AssetsDep) -> Response:
    """The embeddable `<reaction-bar>` widget, an ES module exporting its class."""
    return script_response(request, assets.module, WIDGET_CACHE)


VersionPath = Annotated[
    str,
    Path(
        description="The first 16 hex digits of the widget's SHA-384 (GET /v1/widget).",
        json_schema_extra={"pattern": VERSION_PATTERN},
    ),
]
VERSIONED: Final[dict[int | str, dict[str, object]]] = {
    200: {"content": {"text/javascript": {}}, "description": "The widget, immutable."},
    304: {"description": "Not modified."},
    404: {"model": ErrorBody, "description": "Not the current widget's version."},
}


@router.get("/widget.{version}.js", response_model=None, responses=VERSIONED)
async def get_versioned_widget(
    request: Request, assets: AssetsDep, version: VersionPath
) -> Response:
    """The widget at its immutable URL, for a page that pins it with Subresource Integrity."""
    return versioned_response(request, assets.widget, version)


@router.get("/widget.{version}.mjs", response_model=None, responses=VERSIONED)
async def get_versioned_widget_module(
    request: Request, assets: AssetsDep, version: VersionPath
) -> Response:
    """The widget's ES module at its immutable URL, to pin with Subresource Integrity."""
    return versioned_response(request, assets.module, version)


def versioned_response(request: Request, script: Script, version: str) -> Response:
    """`script` at its immutable URL; 404 for any other version."""
    if version != script.version:
        raise ApiError(
            404,
            "unknown_widget_version",
            "No widget of that version here; GET /v1/widget names the current one.",
        )
    return script_response(request, script, IMMUTABLE_CACHE)


def script_response(request: Request, script: Script, cache_control: str) -> Response:
    """`script`, gzipped when the client takes it, or 304 when the client has it."""
    headers = {"Cache-Control": cache_control, "Vary": "Accept-Encoding", "ETag": script.etag}
    if etag_matches(request.headers.get("if-none-match"), script.etag):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        body = script.gzipped
    else:
        body = script.body
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
