"""`python -m services.reader`: serve the read path with uvicorn."""

from __future__ import annotations

import asyncio
import resource
import socket

import uvicorn

from services.reader.app import served_app
from services.reader.config import ReaderSettings
from shared.collector import tune_collector
from shared.logs import configure_logging
from shared.settings import load_settings


class ReaderServer(uvicorn.Server):
    """uvicorn's server, telling the app when it begins to stop so open streams end first."""

    def __init__(self, config: uvicorn.Config, stopping: asyncio.Event) -> None:
        super().__init__(config)
        self._stopping = stopping

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Signal the app, then uvicorn's own shutdown."""
        self._stopping.set()
        await super().shutdown(sockets)


def main() -> None:
    """Run the reader service on its configured port."""
    settings = load_settings(ReaderSettings, "reader")
    configure_logging("reader", settings.log_level)
    # Every SSE client holds a socket: allow as many as the hard limit permits.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stopping = asyncio.Event()
    config = uvicorn.Config(
        served_app(settings, stopping),
        host=settings.host,
        port=settings.reader_port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        timeout_graceful_shutdown=10,
        backlog=4096,
        # The client address is ours to work out (REACTIONS_TRUSTED_PROXIES), not uvicorn's.
        proxy_headers=False,
    )
    # Open streams are many long-lived objects: see shared/collector.py.
    tune_collector()
    ReaderServer(config, stopping).run()


if __name__ == "__main__":
    main()
