"""Schemathesis against the running service's /openapi.json, as an operator would run it
(`st run URL --checks all`, its examples, coverage and fuzzing phases, a valid reader token
in a header): no 5xx, and every response as the document says, for requests that fit it
and requests that break it; secured calls refuse a request without the token."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy.local.client import MintedTokens
from deploy.local.kafka import KafkaBroker
from deploy.local.keys import DevelopmentKeys
from deploy.local.services import Service
from tests.support import run_schemathesis, start_ingest


@pytest.fixture(scope="module")
def schema_service(
    kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory, token_keys: DevelopmentKeys
) -> Iterator[Service]:
    started: list[Service] = []
    try:
        yield start_ingest(
            kafka.bootstrap,
            f"openapi-{uuid.uuid4().hex[:8]}",
            Path(tmp_path_factory.mktemp("openapi-logs")),
            None,
            started,
            keys=token_keys,
        )
    finally:
        for service in started:
            service.stop()


def test_the_document_lists_the_calls_and_their_security(schema_service: Service) -> None:
    spec = httpx.get(f"{schema_service.url}/openapi.json", timeout=30).json()
    assert {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops} == {
        ("POST", "/v1/votes"),
        ("POST", "/v1/readers"),
    }
    scheme = spec["components"]["securitySchemes"]["readerToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert spec["paths"]["/v1/votes"]["post"]["security"] == [{"readerToken": []}]
    assert {} in spec["paths"]["/v1/readers"]["post"]["security"]  # the token is optional
    assert "WWW-Authenticate" in spec["paths"]["/v1/votes"]["post"]["responses"]["401"]["headers"]


def test_ingest_conforms_to_its_openapi_document(
    schema_service: Service, tokens: MintedTokens, tmp_path: Path
) -> None:
    result = run_schemathesis(
        schema_service.url, tokens.token("a.schemathesis"), tmp_path, max_examples=100
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
