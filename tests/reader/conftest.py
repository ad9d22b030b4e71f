"""Fixtures of the reader tests: one reader process per test on the session's Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from deploy.local.services import Service
from tests.support import ServiceFactory


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
