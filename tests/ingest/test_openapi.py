"""Property-based run of schemathesis against the running service's /openapi.json: no
5xx, and every response matches the documented status codes, headers and schemas, for
requests that fit the document (positive) and requests that break it (negative)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from deploy.local.kafka import KafkaBroker
from deploy.local.services import Service
from tests.support import start_ingest


@pytest.fixture(scope="module")
def schema_service(
    kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    started: list[Service] = []
    try:
        yield start_ingest(
            kafka.bootstrap,
            f"openapi-{uuid.uuid4().hex[:8]}",
            Path(tmp_path_factory.mktemp("openapi-logs")),
            # Low enough that 429 (a documented answer) shows up during the run too.
            {"REACTIONS_RATE_LIMIT_READER": "20/minute"},
            started,
        )
    finally:
        for service in started:
            service.stop()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_ingest_conforms_to_its_openapi_document(
    schema_service: Service, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{schema_service.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} == {
        ("PUT", "/v1/articles/{article_id}/reactions/{user_id}"),
        ("DELETE", "/v1/articles/{article_id}/reactions/{user_id}"),
    }

    @given(case=schema.as_strategy(generation_mode=mode))
    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=schema_service.url, timeout=30)

    conforms()
