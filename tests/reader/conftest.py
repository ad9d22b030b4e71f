"""Fixtures of the reader tests: one reader process per test on the session's Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from deploy.local.services import Service
from tests.support import ServiceFactory, mark_view


@pytest.fixture(autouse=True)
async def marked_view(redis: Redis, topic: str) -> None:
    """The session's Redis, emptied and marked as the aggregator marks it when it starts:
    reader tests write the aggregator's part by hand."""
    await mark_view(redis, topic)


@pytest.fixture
def reader(start_service: ServiceFactory) -> Service:
    """A reader process whose demo page points the widget at a fixed ingest URL."""
    return start_service(
        "reader", env={"REACTIONS_PUBLIC_INGEST_URL": "http://ingest.example:9000"}
    )


@pytest.fixture
async def http(reader: Service) -> AsyncIterator[httpx.AsyncClient]:
    """A client on that reader."""
    async with httpx.AsyncClient(base_url=reader.url, timeout=10) as client:
        yield client
