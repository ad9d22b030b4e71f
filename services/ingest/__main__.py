"""`python -m services.ingest`: check the topic, then serve the write path with uvicorn."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

import uvicorn

from services.ingest.config import IngestSettings
from shared.kafka import TopicMismatch, ensure_topics
from shared.logs import configure_logging, get_logger

log = get_logger(__name__)


def _metrics_dir() -> Path:
    """A fresh directory for prometheus-client multiprocess mode, shared by all workers.

    Must be set before any worker imports prometheus_client. An inherited
    PROMETHEUS_MULTIPROC_DIR is emptied: counters of a previous run must not be summed in.
    """
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
    else:
        path = Path(tempfile.mkdtemp(prefix="reactions-ingest-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def main() -> int:
    """Run the ingest service on its configured port with REACTIONS_WORKERS processes."""
    settings = IngestSettings()
    configure_logging("ingest", settings.log_level)
    try:
        # Checked here, before any worker starts, so a refusal is logged once and ends
        # the service with status 2; a worker refusing in its lifespan would end uvicorn
        # with uvicorn's own startup-failure status. Each worker checks again (app.py).
        asyncio.run(
            ensure_topics(
                settings.kafka_bootstrap, settings.topic_spec(), dlq_topic=settings.dlq_topic
            )
        )
    except TopicMismatch as exc:
        log.error("refusing_to_start", **exc.fields())
        return 2
    metrics_dir = _metrics_dir()
    try:
        uvicorn.run(
            "services.ingest.app:app_from_env",
            factory=True,
            workers=settings.workers,
            host=settings.host,
            port=settings.ingest_port,
            loop="uvloop",
            http="httptools",
            # The client IP is resolved by the app, from trusted proxies only.
            proxy_headers=False,
            server_header=False,
            log_config=None,
            timeout_graceful_shutdown=10,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
