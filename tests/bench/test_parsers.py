"""Parsing what the tools print: wrk's summary line, redis-benchmark's CSV, Prometheus lag."""

from __future__ import annotations

import pytest

from bench.latency import consumer_lag
from bench.scenarios.drain import parse_redis_benchmark_csv
from bench.wrk import WrkError, parse_output

WRK_STDOUT = (
    "Running 2s test @ http://127.0.0.1:1234\n"
    "  1 threads and 32 connections\n"
    'BENCH_WRK {"requests":2000,"duration_us":2000000,"bytes":1,"non2xx":100,'
    '"connect_errors":0,"read_errors":1,"write_errors":0,"timeouts":4,"p50_us":1500,'
    '"p90_us":3000,"p99_us":9000,"max_us":12000,"mean_us":1700.5}\n'
)


def test_wrk_summary_counts_only_2xx() -> None:
    result = parse_output(WRK_STDOUT)
    assert result.ok_per_second == 950.0
    assert result.socket_errors == 5
    assert (result.p50_ms, result.p99_ms, result.max_ms) == (1.5, 9.0, 12.0)
    assert result.error_share == pytest.approx(105 / 2005)


def test_wrk_without_summary_is_an_error() -> None:
    with pytest.raises(WrkError, match="no summary"):
        parse_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_redis_benchmark_csv() -> None:
    out = (
        '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms"\n'
        '"EVALSHA abc 2 k1 k2 u love","58377.08","6.5","0.3","6.1"\n'
    )
    assert parse_redis_benchmark_csv(out) == 58377.08
    with pytest.raises(ValueError, match="no rate"):
        parse_redis_benchmark_csv("ERR unknown command\n")


def test_consumer_lag_sums_partitions_or_is_absent() -> None:
    text = (
        "# HELP reactions_aggregator_consumer_lag Records behind.\n"
        "# TYPE reactions_aggregator_consumer_lag gauge\n"
        'reactions_aggregator_consumer_lag{partition="0"} 5.0\n'
        'reactions_aggregator_consumer_lag{partition="1"} 7.0\n'
    )
    assert consumer_lag(text) == 12.0
    assert consumer_lag("# TYPE other_metric gauge\nother_metric 1.0\n") is None
