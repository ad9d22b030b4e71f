"""`python -m services.aggregator`: run the consumer (default) or an operator command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Iterator

import uvicorn

from services.aggregator.app import create_ops_app
from services.aggregator.config import AggregatorSettings
from services.aggregator.consumer import Aggregator
from shared.kafka import ensure_topics
from shared.logs import configure_logging, get_logger
from shared.tallies import connect_redis

log = get_logger(__name__)


class _OpsServer(uvicorn.Server):
    """Serves the ops endpoints; the consumer loop, not uvicorn, owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: AggregatorSettings) -> None:
    """Run the consumer loop and the ops endpoints until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await ensure_topics(
        settings.kafka_bootstrap,
        settings.topic,
        settings.partitions,
        settings.replication_factor,
        dlq_topic=settings.dlq_topic,
    )
    redis = connect_redis(settings.redis_url, cluster=settings.redis_cluster)
    aggregator = Aggregator(settings, redis)
    server = _OpsServer(
        uvicorn.Config(
            create_ops_app(aggregator, redis),
            host=settings.host,
            port=settings.aggregator_port,
            log_config=None,
            lifespan="off",
        )
    )
    ops = asyncio.create_task(server.serve())
    try:
        await aggregator.start()
        log.info("aggregator_started", topic=settings.topic, group=settings.group_id)
        await aggregator.run(stop)
    finally:
        await aggregator.stop()
        server.should_exit = True
        await ops
        await redis.aclose()
        log.info("aggregator_stopped")


def main() -> None:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m services.aggregator")
    parser.add_subparsers(dest="command")
    args = parser.parse_args()
    settings = AggregatorSettings()
    configure_logging("aggregator", settings.log_level)
    if args.command is None:
        import uvloop

        uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
