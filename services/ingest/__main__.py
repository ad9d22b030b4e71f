"""`python -m services.ingest`: serve the write path with uvicorn."""

from __future__ import annotations

import uvicorn

from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from shared.logs import configure_logging


def main() -> None:
    """Run the ingest service on its configured port."""
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.ingest_port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
