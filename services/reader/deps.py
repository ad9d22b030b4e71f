"""The reader's lifespan state and the typed dependencies that hand its parts to routes."""

from __future__ import annotations

from typing import Annotated, TypedDict, cast

from fastapi import Depends, Request
from redis.asyncio import Redis

from services.reader.assets import StaticAssets
from services.reader.config import ReaderSettings
from services.reader.live import ChangeFeed
from services.reader.store import TallyStore
from services.reader.trending import Trending
from shared.http import redis_reachable
from shared.identity import Verifier
from shared.reactions import ReactionSet


class ReaderState(TypedDict):
    """Everything the lifespan opens or prepares, as each request sees it."""

    settings: ReaderSettings
    reactions: ReactionSet
    assets: StaticAssets
    redis: Redis
    store: TallyStore
    feed: ChangeFeed
    trending: Trending
    verifier: Verifier


def _state(request: Request) -> ReaderState:
    # Starlette hands each request a shallow copy of what the lifespan yielded.
    return cast(ReaderState, request.scope["state"])


# The dependencies are coroutines: FastAPI would run plain functions in a thread pool.
async def get_settings(request: Request) -> ReaderSettings:
    """The reader's settings."""
    return _state(request)["settings"]


async def get_reactions(request: Request) -> ReactionSet:
    """The configured reaction types."""
    return _state(request)["reactions"]


async def get_assets(request: Request) -> StaticAssets:
    """The widget, demo page and config, prepared at start-up."""
    return _state(request)["assets"]


async def get_store(request: Request) -> TallyStore:
    """The tally store (Redis through the micro-cache)."""
    return _state(request)["store"]


async def get_feed(request: Request) -> ChangeFeed:
    """The process's change feed for live tallies."""
    return _state(request)["feed"]


async def get_trending_lists(request: Request) -> Trending:
    """The trending lists, merged and cached per reaction and window."""
    return _state(request)["trending"]


async def get_verifier(request: Request) -> Verifier:
    """The reader-token verifier (public keys only)."""
    return _state(request)["verifier"]


async def redis_ready(request: Request) -> dict[str, bool]:
    """The readiness check of `/readyz`: Redis answers."""
    return {"redis": await redis_reachable(_state(request)["redis"])}


SettingsDep = Annotated[ReaderSettings, Depends(get_settings)]
ReactionsDep = Annotated[ReactionSet, Depends(get_reactions)]
AssetsDep = Annotated[StaticAssets, Depends(get_assets)]
StoreDep = Annotated[TallyStore, Depends(get_store)]
FeedDep = Annotated[ChangeFeed, Depends(get_feed)]
TrendingDep = Annotated[Trending, Depends(get_trending_lists)]
VerifierDep = Annotated[Verifier, Depends(get_verifier)]
