"""Live tallies over Server-Sent Events: one stream per page, or one per article."""

from __future__ import annotations

import random
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.reader.config import ReaderSettings
from services.reader.deps import FeedDep, SettingsDep
from services.reader.live import ChangeFeed
from services.reader.responses import (
    ERRORS,
    USER_ID_REFUSED,
    redis_unavailable_as_503,
    refuse_user_id,
)
from services.reader.routes.tallies import parse_bulk_ids
from services.reader.sse import LiveStream, TallyStream, check_stream_room
from shared.clients import client_ip, client_network
from shared.http import ErrorBody
from shared.params import ArticleIdPath, ArticleIdsQuery, check_article_id

router = APIRouter()

RESUME: Final = (
    "A tally is a state, not a log entry: a stream that reconnects (the browser's "
    "EventSource does so by itself, after `retry` ms) gets every subscribed article's "
    "current tally at connect, and that is the whole resume. Events carry no `id`, and "
    "`Last-Event-ID` is ignored."
)
STREAM_RESPONSES: Final = {
    **USER_ID_REFUSED,
    **ERRORS,
    429: {
        "model": ErrorBody,
        "description": "`too_many_client_streams`: this client address (behind a trusted "
        "proxy, the address it forwarded) holds REACTIONS_SSE_MAX_STREAMS_PER_CLIENT "
        "streams on this process; see Retry-After.",
    },
    503: {
        "model": ErrorBody,
        "description": "`redis_unavailable`, `rebuilding` (the counts are rebuilt from the "
        "log after Redis lost its data, or no aggregator has started yet), or "
        "`too_many_streams`: this process holds "
        "REACTIONS_SSE_MAX_CLIENTS streams; retry (another instance) after Retry-After.",
    },
}


@router.get(
    "/v1/stream",
    response_model=None,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "One stream for a whole page: `event: tally` with the plain "
            "GET's JSON (it names its `article_id`), for each article at connect and then "
            "on every change, at most 4 a second per article; a comment after 15 s without "
            "an event; the stream ends after a maximum lifetime and the browser "
            "reconnects. " + RESUME,
        },
        **STREAM_RESPONSES,
    },
)
async def stream_page(
    request: Request,
    feed: FeedDep,
    settings: SettingsDep,
    ids: ArticleIdsQuery,
) -> Response:
    """Live tallies of up to 100 articles (a page) over one Server-Sent Events stream."""
    refuse_user_id(request)
    return await open_stream(request, feed, settings, parse_bulk_ids(ids))


@router.get(
    "/v1/articles/{article_id}/reactions/stream",
    response_model=None,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`event: tally` with the plain GET's JSON at connect and on "
            "every change (at most 4 a second); a comment after 15 s without an event; the "
            "stream ends after a maximum lifetime and the browser reconnects. " + RESUME,
        },
        **STREAM_RESPONSES,
    },
)
async def stream_tally(
    article_id: ArticleIdPath, request: Request, feed: FeedDep, settings: SettingsDep
) -> Response:
    """Live tallies of one article over Server-Sent Events."""
    refuse_user_id(request)
    check_article_id(article_id)
    return await open_stream(request, feed, settings, [article_id])


async def open_stream(
    request: Request, feed: ChangeFeed, settings: ReaderSettings, article_ids: list[str]
) -> TallyStream:
    """Check the caps, join the feed, read the current tallies, and hand back the stream."""
    # An IPv4 address or an IPv6 /64 (one host's usual share): a client cannot step
    # around the cap by changing its low bits.
    client = client_network(client_ip(request.scope, settings.trusted_proxies))
    check_stream_room(feed, client, settings.sse_max_clients, settings.sse_max_streams_per_client)
    outbox = feed.add(article_ids, client)
    try:
        # Subscribe before the first read, so no change can fall between the two.
        await feed.wait_subscribed(2.0)
        with redis_unavailable_as_503():
            first = b"".join(await feed.current_frames(article_ids))
    except BaseException:
        feed.remove(outbox)
        raise
    # Jitter spreads the reconnections of clients that connected together.
    lifetime = settings.sse_max_lifetime_s * random.uniform(0.8, 1.0)
    stream = LiveStream(feed, outbox, lifetime=lifetime, keepalive=settings.sse_keepalive_s)
    return TallyStream(stream, first)
