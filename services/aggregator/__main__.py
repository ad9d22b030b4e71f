"""`python -m services.aggregator`: run the consumer (default) or an operator command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine, Iterator
from typing import Any

import uvicorn
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.aggregator import metrics
from services.aggregator.align import align_topic
from services.aggregator.app import create_ops_app
from services.aggregator.commands import CommandError, erase_reader, rebuild
from services.aggregator.config import AggregatorSettings
from services.aggregator.consumer import Aggregator
from shared.identity import site_reader_id
from shared.kafka import KafkaUnreachable, TopicMismatch, ensure_configured_topics
from shared.logs import configure_logging, get_logger
from shared.settings import load_settings
from shared.shutdown import close_within
from shared.tallies import APPLIES, connect_redis

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

    # Waiting for Kafka to answer (it may start after us): a SIGTERM meanwhile ends it.
    if not await _unless_stopped(ensure_configured_topics(settings), stop):
        return
    redis = connect_redis(settings.redis_url, APPLIES, cluster=settings.redis_cluster)
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
    memory = asyncio.create_task(_sample_redis_memory(redis))
    try:
        # Starting waits on Kafka and Redis (joining the group, loading the scripts): a
        # SIGTERM meanwhile must not wait for them too.
        if await _unless_stopped(aggregator.start(), stop):
            log.info("aggregator_started", topic=settings.topic, group=settings.group_id)
            await aggregator.run(stop)
    finally:
        await aggregator.stop()
        memory.cancel()
        server.should_exit = True
        await ops
        await close_within("redis", redis.aclose())
        log.info("aggregator_stopped")


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Await `work`, cancelled if `stop` is set first; True when it finished."""
    task = asyncio.create_task(work)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("start_abandoned_for_shutdown")
        return False
    task.result()
    return True


async def _sample_redis_memory(redis: Redis, every_s: float = 5.0) -> None:
    while True:
        try:
            info = await redis.info("memory")
            metrics.REDIS_USED_MEMORY.set(info["used_memory"])
        except (RedisError, OSError, KeyError) as exc:
            log.warning("redis_memory_sample_failed", error=repr(exc))
        await asyncio.sleep(every_s)


def main() -> None:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(
        prog="python -m services.aggregator",
        description="Without a command: run the aggregator (consumer group member).",
    )
    commands = parser.add_subparsers(dest="command")
    rebuild_cmd = commands.add_parser(
        "rebuild", help="empty the Redis view and replay the whole topic into it"
    )
    rebuild_cmd.add_argument(
        "--force", action="store_true", help="run even if the consumer group has members"
    )
    erase = commands.add_parser(
        "erase-reader", help="publish clears for every article a reader reacted on"
    )
    who = erase.add_mutually_exclusive_group(required=True)
    who.add_argument("reader_id", nargs="?", help="a reader id (a.…, s.…, h.…, or an older id)")
    who.add_argument(
        "--site-subject",
        help="a site's subject (its JWT `sub`), mapped to its reader id as tokens map it",
    )
    commands.add_parser(
        "align-topic",
        help="set the topic's configs (compaction lag, min.insync.replicas) to the settings",
    )
    args = parser.parse_args()
    settings = load_settings(AggregatorSettings, "aggregator")
    configure_logging("aggregator", settings.log_level)
    # asyncio's own loop, not uvloop: under uvloop a write to a connection the broker has
    # just closed raises RuntimeError, which aiokafka does not expect (aio-libs/aiokafka
    # #1038), and the consumer's group coordination then fails for good: a broker crash
    # could end the member. asyncio's loop drops such a write and aiokafka sees the closed
    # connection. It costs nothing here: one aggregator drained 100,000 events at 103,600
    # and 108,900 events/s on it against 98,400 and 98,100 on uvloop
    # (`python -m bench.aggregator_drain --events 100000`, alternating).
    try:
        if args.command is None:
            asyncio.run(serve(settings))
        elif args.command == "rebuild":
            asyncio.run(rebuild(settings, force=args.force))
        elif args.command == "erase-reader":
            reader_id = (
                site_reader_id(args.site_subject)
                if args.site_subject is not None
                else args.reader_id
            )
            asyncio.run(erase_reader(settings, reader_id))
        elif args.command == "align-topic":
            asyncio.run(align_topic(settings))
    except TopicMismatch as exc:
        log.error("refusing_to_start", **exc.fields())
        raise SystemExit(2) from None
    except KafkaUnreachable as exc:
        log.error("kafka_unreachable", **exc.fields())
        raise SystemExit(1) from None
    except CommandError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
