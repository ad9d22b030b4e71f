"""The REACTIONS_ environment variables each service's settings class reads."""

from __future__ import annotations

from pydantic_settings import BaseSettings

from services.aggregator.config import AggregatorSettings
from services.ingest.config import IngestSettings
from services.reader.config import ReaderSettings

SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "aggregator": AggregatorSettings,
    "reader": ReaderSettings,
}


def env_names(service: str) -> set[str]:
    """Variable names the service's settings read (prefix + field name, upper case)."""
    settings = SETTINGS[service]
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in settings.model_fields}


def default(service: str, field: str) -> object:
    """A settings field's default value."""
    return SETTINGS[service].model_fields[field].default


def any_service_env_names() -> set[str]:
    """Variables at least one service reads."""
    return set().union(*(env_names(name) for name in SETTINGS))
