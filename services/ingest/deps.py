"""What the lifespan hands to each request, and the dependency that gives it to handlers."""

from __future__ import annotations

from typing import Annotated, TypedDict, cast

from fastapi import Depends, Request

from services.ingest.publisher import Publisher
from services.ingest.ratelimit import RateLimits
from services.ingest.tokens import TokenIssuer
from shared.identity import Verifier
from shared.reactions import ReactionSet


class IngestState(TypedDict):
    """The lifespan's state: the server copies it into every request's scope."""

    publisher: Publisher
    limits: RateLimits
    reactions: ReactionSet
    clock_skew_ms: int  # the furthest a client_ts may be ahead of this server's clock
    verifier: Verifier
    issuer: TokenIssuer | None


async def get_state(request: Request) -> IngestState:
    """The state the lifespan yielded, as seen by this request."""
    return cast(IngestState, request.scope["state"])


# One dependency for the whole state rather than one per client: FastAPI resolves each
# dependency of the hot path on every request (about 10 µs apiece here). Async, because
# FastAPI would run a sync one in a thread.
StateDep = Annotated[IngestState, Depends(get_state)]
