"""The soak harness for a few seconds against real services on loopback, so that it cannot
rot: votes each by a new reader, page streams opened and closed, every service's memory
sampled, the slope computed and the files written. The ten-minute run is `make soak`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from bench.soak import SoakRun, slope_per_min, soak, write
from bench.sse_clients import UNCAPPED
from deploy.local.kafka import KafkaBroker
from deploy.local.keys import DevelopmentKeys
from deploy.local.services import UNLIMITED_RATES
from services.ingest.tokens import minted, write_tokens
from tests.support import ServiceFactory, read_topic

TOKENS = 20_000
SECONDS = 4.0
STREAMS_PER_S = 25.0
MEASURED_MAX = 1000.0
VOTES_PER_S = 300.0


def test_slope_is_a_least_squares_fit_per_minute() -> None:
    assert slope_per_min([(0.0, 10.0), (30.0, 11.0), (60.0, 12.0)]) == 2.0
    assert slope_per_min([(0.0, 5.0), (60.0, 5.0), (120.0, 5.0)]) == 0.0
    assert slope_per_min([(0.0, 1.0), (1.0, 2.0)]) is None


async def test_the_soak_harness_runs_every_part_and_writes_its_results(
    start_service: ServiceFactory,
    token_keys: DevelopmentKeys,
    kafka: KafkaBroker,
    topic: str,
    tmp_path: Path,
) -> None:
    tokens = tmp_path / "tokens.tsv"
    write_tokens(minted(token_keys.issuer(), TOKENS, None, None), tokens)
    ingest = start_service("ingest", env=UNLIMITED_RATES)
    aggregator = start_service("aggregator")
    reader = start_service("reader", env=UNCAPPED)
    pids = {"ingest": ingest, "aggregator": aggregator, "reader": reader}
    processes = {name: service.process.pid() for name, service in pids.items()}
    run: SoakRun = await asyncio.to_thread(
        soak,
        ingest_url=ingest.url,
        reader_url=reader.url,
        processes={name: pid for name, pid in processes.items() if pid is not None},
        tokens=tokens,
        start_line=1,
        duration_s=SECONDS,
        interval_s=0.5,
        streams_per_s=STREAMS_PER_S,
        hold_s=(0.2, 0.8),
        connections=4,
        articles=50,
        votes_per_s=VOTES_PER_S,
    )

    # Votes: accepted at the pace asked for (at saturation ingest takes thousands a
    # second here), and every one by a reader not seen before (the walk never repeats until
    # the file is used up).
    accepted = run.wrk.requests - run.wrk.non2xx
    assert VOTES_PER_S * SECONDS * 0.5 <= accepted <= VOTES_PER_S * SECONDS * 1.1, run.wrk
    assert run.wrk.non2xx <= run.wrk.requests / 2, run.wrk
    records = await read_topic(kafka.bootstrap, topic, at_least=accepted)
    readers = [orjson.loads(r.value or b"{}")["user_id"] for r in records]
    assert len(set(readers)) == len(readers)

    # Streams: opened at the rate, answered with tallies, none refused.
    assert run.churn.opened >= STREAMS_PER_S * SECONDS * 0.5, run.churn
    assert run.churn.answered > 0 and run.churn.refused == run.churn.failed == 0, run.churn

    # Memory and load sampled for every service from the start to the end.
    assert len(run.samples) >= 5
    assert run.samples[-1].t >= SECONDS - 1
    for sample in run.samples:
        assert set(sample.rss) == set(pids) and min(sample.rss.values()) > 0
    first, last = run.samples[0], run.samples[-1]
    assert first.votes is not None and last.votes is not None and last.votes > first.votes
    assert any(s.streams for s in run.samples)
    assert all(s.limit_keys is not None for s in run.samples)  # ingest's keys-held gauge

    services = run.services(first_window_s=1.0)
    assert all(s["slope_mb_per_min"] is not None for s in services.values())
    meta = {
        "mode": "test",
        "command": "pytest tests/bench/test_soak.py",
        "machine": "this one",
        "load_end": "0",
        "finished_at": "now",
        "measured_max_per_s": MEASURED_MAX,
    }
    json_path, md_path, png_path = write(run.document(1.0, meta), tmp_path, "soak")
    document = orjson.loads(json_path.read_bytes())
    assert set(document["services"]) == set(pids)
    assert document["limit_keys"]["end"] is not None
    assert len(document["samples"]) == len(run.samples)
    assert "| ingest |" in md_path.read_text()
    assert f"paced at {VOTES_PER_S:,.0f} votes/s" in md_path.read_text()
    assert png_path.read_bytes().startswith(b"\x89PNG")
