"""Our three services as real processes of the local stack, and the one function that
builds their environment for the command line, the tests and the bench alike."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from deploy.local.keys import SIGNING_KEY_VARIABLE, DevelopmentKeys
from deploy.local.process import Process, wait_for
from services.aggregator.config import AggregatorSettings
from services.ingest.config import IngestSettings
from services.reader.config import ReaderSettings

SERVICE_NAMES = ("ingest", "aggregator", "reader")

# Rate limits no test or load generator reaches: they send from one address with few
# reader ids, and what they measure or check is not the abuse controls.
UNLIMITED_RATES = {
    "REACTIONS_RATE_LIMIT_IP": "100000000/minute",
    "REACTIONS_RATE_LIMIT_READER": "100000000/minute",
    "REACTIONS_RATE_LIMIT_TOKENS": "100000000/minute",
}


def port_variable(name: str) -> str:
    """The variable a service reads its HTTP port from."""
    return f"REACTIONS_{name.upper()}_PORT"


def service_env(
    *,
    kafka_bootstrap: str | None = None,
    redis_url: str | None = None,
    topic: str | None = None,
    partitions: int | None = None,
    cluster: bool = False,
    ingest_port: int | None = None,
    keys: DevelopmentKeys | None = None,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The REACTIONS_ variables that point the services at one stack's Kafka and Redis.

    What is not given is left to the services' settings and their defaults. A topic of its
    own gets a consumer group of its own (`agg-<topic>`), so aggregators on different topics
    never share offsets. `cluster` is the scaled-out stack: a Redis Cluster, and topics
    replicated to three Kafka nodes (two in sync for an `acks=all` write). `ingest_port` is
    where the reader's demo page points the widget. `keys` are the reader-token keys (the
    signing key reaches ingest only). Each `Service` adds its own port; `overrides` come
    last.
    """
    env: dict[str, str] = dict(keys.env()) if keys is not None else {}
    if kafka_bootstrap is not None:
        env["REACTIONS_KAFKA_BOOTSTRAP"] = kafka_bootstrap
    if redis_url is not None:
        env["REACTIONS_REDIS_URL"] = redis_url
    if cluster:
        env["REACTIONS_REDIS_CLUSTER"] = "true"
        env["REACTIONS_REPLICATION_FACTOR"] = "3"
        env["REACTIONS_MIN_INSYNC_REPLICAS"] = "2"
    if topic is not None:
        env["REACTIONS_TOPIC"] = topic
        env["REACTIONS_GROUP_ID"] = f"agg-{topic}"
    if partitions is not None:
        env["REACTIONS_PARTITIONS"] = str(partitions)
    if ingest_port is not None:
        env[port_variable("ingest")] = str(ingest_port)
    return {**env, **(overrides or {})}


def configured_ports() -> dict[str, int]:
    """Each service's HTTP port as its own settings read it (REACTIONS_ variables)."""
    return {
        "ingest": IngestSettings().ingest_port,
        "aggregator": AggregatorSettings().aggregator_port,
        "reader": ReaderSettings().reader_port,
    }


class Service:
    """One of our services as a real process: `python -m services.<name>` (or `module`),
    ready once its /readyz answers 200. A service of ours is told its port through
    `REACTIONS_<NAME>_PORT`, added to `env` here."""

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
        if module is None:
            env = {**env, port_variable(name): str(port)}
            if name != "ingest":
                # Only ingest signs reader tokens; the others verify with public keys.
                env.pop(SIGNING_KEY_VARIABLE, None)
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
