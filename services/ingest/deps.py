"""What the lifespan hands to each request, and the dependencies that give it to handlers."""

from __future__ import annotations

from typing import Annotated, TypedDict, cast

from fastapi import Depends, Request

from services.ingest.publisher import Publisher
from services.ingest.ratelimit import RateLimits
from shared.reactions import ReactionSet


class IngestState(TypedDict):
    """The lifespan's state: the server copies it into every request's scope."""

    publisher: Publisher
    limits: RateLimits
    reactions: ReactionSet


def lifespan_state(request: Request) -> IngestState:
    """The state the lifespan yielded, as seen by this request."""
    return cast(IngestState, request.scope["state"])


# Plain lookups, and async: FastAPI runs a sync dependency in a thread, which the hot path
# would pay for on every request.
async def get_publisher(request: Request) -> Publisher:
    """The Kafka publisher."""
    return lifespan_state(request)["publisher"]


async def get_limits(request: Request) -> RateLimits:
    """The per-IP and per-reader rate limits."""
    return lifespan_state(request)["limits"]


async def get_reactions(request: Request) -> ReactionSet:
    """The configured reaction types."""
    return lifespan_state(request)["reactions"]


PublisherDep = Annotated[Publisher, Depends(get_publisher)]
LimitsDep = Annotated[RateLimits, Depends(get_limits)]
ReactionsDep = Annotated[ReactionSet, Depends(get_reactions)]
