"""Aggregator throughput with 1, 2 and 3 processes on the scaled-out stack.

    .venv/bin/python -m bench.cluster_scaling --events 200000

Starts three KRaft nodes and a Redis Cluster (three masters, one replica each) on free
ports, produces one Zipf-skewed backlog (replication 3), then for N = 1, 2, 3 empties the
Redis Cluster, starts N aggregator processes in a fresh consumer group and times the
drain from the first stored position to the last (events/s, all processes together).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from redis.cluster import RedisCluster

from bench.backlog import Workload, produce
from deploy.local.kafka import KafkaCluster
from deploy.local.process import free_port
from deploy.local.redis import RedisClusterNodes, free_cluster_port
from deploy.local.services import Service, service_env
from shared.kafka import TopicSpec, ensure_topics
from shared.tallies import position_key

TOPIC = "bench-cluster"
PARTITIONS = 12


def drain(kafka: KafkaCluster, redis: RedisClusterNodes, processes: int, events: int) -> float:
    """Events/s of `processes` aggregators draining the backlog into an emptied cluster."""
    client = RedisCluster.from_url(redis.url)
    client.flushall()
    keys = [position_key(TOPIC, p) for p in range(PARTITIONS)]
    env = service_env(
        kafka_bootstrap=kafka.bootstrap,
        redis_url=redis.url,
        topic=TOPIC,
        partitions=PARTITIONS,
        cluster=True,
        overrides={
            "REACTIONS_GROUP_ID": f"bench-scale-{processes}-{time.time_ns()}",
            "REACTIONS_LOG_LEVEL": "WARNING",
        },
    )
    log_dir = Path(tempfile.mkdtemp(prefix="scale-logs-"))
    aggregators = [
        Service("aggregator", free_port(), env, log_dir / str(i)) for i in range(processes)
    ]
    try:
        for aggregator in aggregators:
            aggregator.process.start()
        first: tuple[float, int] | None = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            done = sum(int(v) for v in client.mget(keys) if v is not None)
            now = time.monotonic()
            if first is None and done > 0:
                first = (now, done)
            if done >= events and first is not None and now > first[0]:
                return (events - first[1]) / (now - first[0])
            for aggregator in aggregators:
                aggregator.process.check_alive()
            time.sleep(0.02)
        raise TimeoutError("the aggregators did not drain the backlog in 15 minutes")
    finally:
        for aggregator in aggregators:
            aggregator.stop()
        client.close()


def main() -> int:
    """Measure and print events/s for 1, 2 and 3 aggregator processes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        kafka = KafkaCluster(Path(tmp) / "kafka", [(free_port(), free_port()) for _ in range(3)])
        redis = RedisClusterNodes(Path(tmp) / "redis", [free_cluster_port() for _ in range(6)])
        try:
            kafka.start()
            redis.start()
            asyncio.run(ensure_topics(kafka.bootstrap, TopicSpec(TOPIC, PARTITIONS, 3, 2)))
            sent = asyncio.run(produce(kafka.bootstrap, TOPIC, PARTITIONS, Workload(args.events)))
            out = sys.stdout.write
            out(f"backlog: {sent:,} events, {PARTITIONS} partitions, replication 3\n")
            base = None
            for processes in (1, 2, 3):
                rate = drain(kafka, redis, processes, sent)
                base = base or rate
                out(f"{processes} aggregator(s): {rate:,.0f} events/s ({rate / base:.2f}x)\n")
        finally:
            redis.stop()
            kafka.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
