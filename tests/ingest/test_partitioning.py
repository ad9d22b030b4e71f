"""Partitioning is Kafka's own: vectors computed at test time by the Java client's
`Utils.murmur2` / `toPositive` from the broker's jars, compared with partition_for, and
records produced by the ingest service read back from the partition they must be in."""

from __future__ import annotations

import random
import string
import subprocess
from pathlib import Path

import orjson

from deploy.local.client import MintedTokens, VoteClient
from deploy.local.kafka import KAFKA_LIB, KafkaBroker
from deploy.local.services import Service
from shared.events import murmur2, partition_for
from tests.support import read_topic

JAVA_SOURCE = Path(__file__).with_name("Murmur.java")
ALLOWED = string.ascii_letters + string.digits + "._:~-"
PUNCTUATION = "._:~-"


def java_murmur2(ids: list[str]) -> list[tuple[int, int]]:
    """(murmur2, toPositive(murmur2)) of each id, computed by Kafka's Java code."""
    result = subprocess.run(
        ["java", "-cp", f"{KAFKA_LIB}/*", str(JAVA_SOURCE), *ids],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = result.stdout.split()
    pairs = [(int(lines[i]), int(lines[i + 1])) for i in range(0, len(lines), 2)]
    assert len(pairs) == len(ids)
    return pairs


def vector_ids() -> list[str]:
    rng = random.Random(20260901)
    ids = [
        "a",
        "Z",
        "0",
        *PUNCTUATION,  # each punctuation char alone, length 1
        "a" * 128,
        "".join(rng.choice(ALLOWED) for _ in range(128)),
        PUNCTUATION,
        "news:2026/09/01".replace("/", "."),
        "story-1",
        "world.europe~live_blog:123-456",
        "ab",
        "abc",
        "abcd",
        "abcde",
    ]
    ids += ["".join(rng.choice(ALLOWED) for _ in range(rng.randint(1, 128))) for _ in range(20)]
    return ids


def test_partition_for_matches_kafkas_java_partitioner() -> None:
    ids = vector_ids()
    assert {len(i) for i in ids} >= {1, 128}
    assert set(PUNCTUATION) <= set("".join(ids))
    java = java_murmur2(ids)
    for article_id, (java_hash, java_positive) in zip(ids, java, strict=True):
        assert murmur2(article_id.encode()) == java_hash, article_id
        for partitions in (1, 4, 12, 7, 1000):
            assert partition_for(article_id, partitions) == java_positive % partitions, article_id


async def test_ingest_writes_each_article_to_the_java_partition(
    ingest: Service, kafka: KafkaBroker, module_topic: str, tokens: MintedTokens
) -> None:
    # `ingest` is configured with 4 partitions.
    articles = vector_ids()[:24]
    java = dict(zip(articles, java_murmur2(articles), strict=True))
    event_ids = {}
    async with VoteClient(ingest.url, timeout=30, tokens=tokens) as votes:
        for article_id in articles:
            response = await votes.set(article_id, "a.partition-reader", "like")
            assert response.status_code == 202, response.text
            event_ids[response.json()["event_id"]] = article_id
    assert len({java[a][1] % 4 for a in articles}) > 1  # the vectors spread over partitions

    records = await read_topic(kafka.bootstrap, module_topic, at_least=len(event_ids))
    found = 0
    for record in records:
        event = orjson.loads(record.value)
        if event["event_id"] in event_ids:
            article_id = event_ids[event["event_id"]]
            assert record.partition == java[article_id][1] % 4, article_id
            assert record.key == f"{article_id}\x1fa.partition-reader".encode()
            found += 1
    assert found == len(event_ids)
