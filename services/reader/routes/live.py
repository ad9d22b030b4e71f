"""Live tallies of one article over Server-Sent Events."""

from __future__ import annotations

import random

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.reader.deps import FeedDep, SettingsDep, StoreDep
from services.reader.live import Mailbox
from services.reader.responses import (
    ERRORS,
    USER_ID_REFUSED,
    redis_unavailable_as_503,
    refuse_user_id,
)
from services.reader.sse import check_stream_room, tally_events, tally_stream
from shared.params import ArticleIdPath, check_article_id

router = APIRouter()


@router.get(
    "/v1/articles/{article_id}/reactions/stream",
    response_model=None,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`event: tally` with the plain GET's JSON at connect and on "
            "every change (at most 4 a second), each with its seq; a comment every 15 s; "
            "the stream ends after a maximum lifetime and the browser reconnects.",
        },
        **USER_ID_REFUSED,
        **ERRORS,
    },
)
async def stream_tally(
    article_id: ArticleIdPath,
    request: Request,
    feed: FeedDep,
    store: StoreDep,
    settings: SettingsDep,
) -> Response:
    """Live tallies of one article over Server-Sent Events."""
    refuse_user_id(request)
    check_article_id(article_id)
    check_stream_room(feed, settings.sse_max_clients)
    mailbox: Mailbox = feed.add(article_id)
    try:
        # Subscribe before the first read, so no change can fall between the two.
        await feed.wait_subscribed(2.0)
        with redis_unavailable_as_503():
            # Kept as str: orjson's bytes keep a 4 KiB buffer, per open stream.
            first = (await store.render(article_id)).decode()
    except BaseException:
        feed.remove(article_id, mailbox)
        raise
    # Jitter spreads the reconnections of clients that connected together.
    lifetime = settings.sse_max_lifetime_s * random.uniform(0.8, 1.0)
    events = tally_events(first, mailbox, lifetime=lifetime, keepalive=settings.sse_keepalive_s)
    return tally_stream(events, lambda: feed.remove(article_id, mailbox))
