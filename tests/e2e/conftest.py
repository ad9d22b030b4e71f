"""The widget tests' stack and browser: ingest, aggregator and reader on free ports with the
session's token keys and a site's HS256 secret, and Debian's Chromium through Playwright,
shared by every widget test of the package.

Playwright's sync API marks its event loop as running on the main thread between calls, for
as long as the browser is open: pytest-asyncio cannot run a coroutine there then. So this
package holds no async test (the pipeline's are in tests/pipeline/), and a collection check
says so if one is added; the package-scoped browser is closed before any other package's
tests run.
"""

from __future__ import annotations

import inspect
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from deploy.local.kafka import KafkaBroker
from deploy.local.keys import DevelopmentKeys
from deploy.local.process import free_port
from deploy.local.redis import RedisServer
from deploy.local.services import UNLIMITED_RATES, Service, service_env
from tests.e2e.bars import SITE_AUDIENCE, SITE_ISSUER, Stack
from tests.e2e.site import NewsSite

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse an async test in this package: it cannot run while the browser is open."""
    here = Path(__file__).parent
    for item in items:
        function = getattr(item, "function", None)
        if item.path.is_relative_to(here) and inspect.iscoroutinefunction(function):
            raise pytest.UsageError(
                f"{item.nodeid}: async tests cannot share a package with Playwright's sync "
                "browser (it holds the thread's event loop); put it outside tests/e2e"
            )


@pytest.fixture(scope="package")
def stack(
    kafka: KafkaBroker,
    redis_server: RedisServer,
    token_keys: DevelopmentKeys,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The three services on a topic of their own; new identities unlimited (every test's
    browser mints its own from one address)."""
    topic = f"widget-{uuid.uuid4().hex[:10]}"
    ports = {name: free_port() for name in ("ingest", "aggregator", "reader")}
    site_secret = secrets.token_bytes(32)
    secret_file = tmp_path_factory.mktemp("site") / "site-secret"
    secret_file.write_bytes(site_secret)
    env = service_env(
        kafka_bootstrap=kafka.bootstrap,
        redis_url=redis_server.url,
        topic=topic,
        partitions=4,
        ingest_port=ports["ingest"],
        keys=token_keys,
        overrides={
            **UNLIMITED_RATES,
            "REACTIONS_PUBLIC_INGEST_URL": f"http://127.0.0.1:{ports['ingest']}",
            "REACTIONS_SITE_JWT_SECRET_FILE": str(secret_file),
            "REACTIONS_SITE_JWT_ISSUER": SITE_ISSUER,
            "REACTIONS_SITE_JWT_AUDIENCE": SITE_AUDIENCE,
        },
    )
    logs = tmp_path_factory.mktemp("widget-stack")
    services = {name: Service(name, port, env, logs / name) for name, port in ports.items()}
    try:
        for service in services.values():
            service.start()
        yield Stack(services["ingest"], services["reader"], site_secret, topic)
    finally:
        for service in reversed(list(services.values())):
            service.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (never a downloaded one)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh profile: empty storage, caches and preflight cache."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    yield context
    context.close()


@pytest.fixture(scope="package")
def site() -> Iterator[NewsSite]:
    """A news site's page server on an origin of its own."""
    news_site = NewsSite()
    yield news_site
    news_site.close()
