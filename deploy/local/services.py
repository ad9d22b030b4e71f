"""Our three services as real processes of the local stack."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from deploy.local.process import Process, wait_for


class Service:
    """One of our services as a real process: `python -m services.<name>` (or `module`),
    ready once its /readyz answers 200."""

    def __init__(
        self,
        name: str,
        port: int,
        env: Mapping[str, str],
        log_dir: Path,
        args: list[str] | None = None,
        *,
        module: str | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.process = Process(
            name,
            [sys.executable, "-m", module or f"services.{name}", *(args or [])],
            [port],
            log_dir / f"{name}.log",
            env=env,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.process.start()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            self.process.check_alive()
            return http_ok(f"{self.url}/readyz")

        wait_for(ready, timeout, f"{self.name} /readyz on port {self.port}", 0.2)

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()


def http_ok(url: str) -> bool:
    """True when GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


SERVICE_NAMES = ("ingest", "aggregator", "reader")
