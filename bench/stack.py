"""The benchmark's own stack: Kafka, Redis, the services and the baseline apps, all on free
loopback ports with data in a temporary directory, stopped at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import redis

from deploy.local.kafka import KafkaBroker
from deploy.local.keys import DevelopmentKeys
from deploy.local.process import free_port
from deploy.local.redis import RedisServer
from deploy.local.services import UNLIMITED_RATES, Service, service_env
from services.ingest.tokens import IssuedToken, write_tokens
from shared.settings import CommonSettings
from shared.tallies import epoch_key

# Readers the load generators vote as, each with a token minted with the stack's key (no
# issuance limit in the way): more than ingest's cache of verified tokens holds, so the
# write path pays for signature checks as a real crowd of readers would make it.
BENCH_READERS = 30_000

# Extra environment for the services under test. A load generator on loopback is one IP
# and reuses readers, and throttled answers are not counted as throughput (the table flags
# a non-2xx share): lift the abuse limits.
SERVICE_ENV: dict[str, str] = {"REACTIONS_LOG_LEVEL": "WARNING", **UNLIMITED_RATES}


class BenchStack:
    """Kafka and Redis for the whole run; services and baselines start and stop per scenario."""

    def __init__(self, topic: str = "bench-reactions", partitions: int = 12) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="reactions-bench-"))
        self.topic = topic
        self.partitions = partitions
        self.kafka = KafkaBroker(self.dir / "kafka", free_port(), free_port(), heap="768m")
        self.redis = RedisServer(self.dir / "redis", free_port())
        self.keys = DevelopmentKeys.ensure(self.dir / "keys")
        self._started: list[Service | AppProcess] = []
        self._issued: list[IssuedToken] = []

    def start(self) -> None:
        """Start Kafka and Redis (both wait until they answer)."""
        self.kafka.start()
        self.redis.start()

    def stop(self) -> None:
        """Stop everything started, in reverse order, and remove the data directory."""
        for part in reversed(self._started):
            with contextlib.suppress(Exception):
                part.stop()
        self._started.clear()
        with contextlib.suppress(Exception):
            self.redis.stop()
        with contextlib.suppress(Exception):
            self.kafka.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def redis_url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/{db}"

    def service_env(self, **overrides: str) -> dict[str, str]:
        """REACTIONS_ variables pointing a service at this stack (and its token keys)."""
        return service_env(
            kafka_bootstrap=self.kafka.bootstrap,
            redis_url=self.redis_url(),
            topic=self.topic,
            partitions=self.partitions,
            keys=self.keys,
            overrides={**SERVICE_ENV, **overrides},
        )

    def tokens(self, count: int = BENCH_READERS) -> list[str]:
        """Tokens of `count` readers (`a.bench-0`, …), minted once with the stack's key."""
        issuer = self.keys.issuer()
        while len(self._issued) < count:
            self._issued.append(issuer.issue(f"a.bench-{len(self._issued)}"))
        return [issued.token for issued in self._issued[:count]]

    def tokens_file(self, count: int = BENCH_READERS) -> Path:
        """The same tokens as a file of `reader_id<TAB>token` lines, for wrk."""
        path = self.dir / f"tokens-{count}.tsv"
        if not path.exists():
            self.tokens(count)
            write_tokens(iter(self._issued[:count]), path)
        return path

    def start_service(self, name: str, **overrides: str) -> Service:
        """Run `python -m services.<name>` on a free port against this stack."""
        return self.start_services((name, overrides))[0]

    def start_services(self, *specs: tuple[str, dict[str, str]]) -> list[Service]:
        """Start several services at once (start-up is slow on a busy machine), then wait
        until each is ready."""
        services = []
        for name, overrides in specs:
            log_dir = self.dir / "logs" / f"{name}-{len(self._started)}"
            service = Service(name, free_port(), self.service_env(**overrides), log_dir)
            self._started.append(service)
            service.process.start()
            services.append(service)
        for service in services:
            service.wait_ready(timeout=90)
        return services

    def start_app(self, module: str, env: Mapping[str, str] | None = None) -> AppProcess:
        """Run one of the baseline apps (`python -m bench.baselines.<module>`) on a free port."""
        return self.start_apps((module, env or {}))[0]

    def start_apps(self, *specs: tuple[str, Mapping[str, str]]) -> list[AppProcess]:
        """Start several baseline apps at once, then wait until each is ready."""
        apps = []
        for module, env in specs:
            app = AppProcess(module, free_port(), self.dir / "logs", env)
            self._started.append(app)
            app.process.start()
            apps.append(app)
        for app in apps:
            app.wait_ready()
        return apps

    def stop_part(self, part: Service | AppProcess) -> None:
        """Stop one service or baseline now (frees its CPU for the next measurement)."""
        part.stop()
        with contextlib.suppress(ValueError):
            self._started.remove(part)


def mark_view(redis_url: str, topic: str = CommonSettings.model_fields["topic"].default) -> None:
    """Mark the Redis at `redis_url` as an aggregator marks it when it starts on a topic
    without records: a reader measured without an aggregator serves its counts then."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.set(epoch_key(topic), "bench", nx=True)
    finally:
        client.close()


class AppProcess(Service):
    """A baseline app as a real process, served by uvicorn with the services' flags."""

    def __init__(self, module: str, port: int, log_dir: Path, env: Mapping[str, str]) -> None:
        super().__init__(
            f"{module}-{port}",
            port,
            {"BENCH_PORT": str(port), **env},
            log_dir,
            module=f"bench.baselines.{module}",
        )


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (uvicorn's workers, when it runs more than one)."""
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            children += [int(c) for c in text]
    return children


def fetch_text(url: str, timeout: float = 2.0) -> str | None:
    """GET `url` and return the body, or None on any HTTP or network failure."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return str(response.read().decode())
    except OSError:
        return None


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary directory removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="reactions-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def machine_description() -> str:
    """CPU model, core count and memory of this machine, for the report."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    load = ""
    with contextlib.suppress(OSError):
        load = f", load average at start {Path('/proc/loadavg').read_text().split()[0]}"
    return f"{model}, {os.cpu_count()} cores{mem}{load}"
