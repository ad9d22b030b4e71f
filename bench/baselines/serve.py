"""Serve a baseline app exactly as the services are served (uvicorn, uvloop, httptools)."""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI

from shared.logs import configure_logging


def serve(app: FastAPI, name: str) -> None:
    """Run `app` on BENCH_PORT with the same uvicorn flags as services/*/__main__.py."""
    configure_logging(name, "WARNING")
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ["BENCH_PORT"]),
        loop="uvloop",
        http="httptools",
        log_config=None,
        timeout_graceful_shutdown=5,
    )
