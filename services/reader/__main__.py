"""`python -m services.reader`: serve the read path with uvicorn."""

from __future__ import annotations

import resource

import uvicorn

from services.reader.app import create_app
from services.reader.config import ReaderSettings
from shared.logs import configure_logging
from shared.settings import load_settings


def main() -> None:
    """Run the reader service on its configured port."""
    settings = load_settings(ReaderSettings, "reader")
    configure_logging("reader", settings.log_level)
    # Every SSE client holds a socket: allow as many as the hard limit permits.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.reader_port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        timeout_graceful_shutdown=10,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
