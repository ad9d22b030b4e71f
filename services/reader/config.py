"""Reader settings: the only place the reader service reads the environment."""

from __future__ import annotations

from pydantic import Field

from shared.settings import HttpServiceSettings


class ReaderSettings(HttpServiceSettings):
    """Settings of the read path."""

    host: str = Field("127.0.0.1", description="Interface the reader service binds.")
    reader_port: int = Field(8001, ge=1, le=65535, description="Reader HTTP port.")
    ingest_port: int = Field(8000, ge=1, le=65535, description="Ingest HTTP port.")
    public_ingest_url: str | None = Field(
        None,
        description="Ingest base URL the demo page gives the widget; unset: the demo's own "
        "host on the ingest port.",
    )
    reader_cache_ttl_ms: int = Field(
        500, ge=0, le=500, description="Longest a cached tally is served (0 disables the cache)."
    )
    reader_cache_entries: int = Field(
        10_000, ge=1, le=10_000_000, description="Most articles the tally cache holds."
    )
    sse_keepalive_s: float = Field(
        15.0, gt=0, le=300, description="Interval of the SSE keep-alive comment."
    )
    sse_max_lifetime_s: float = Field(
        600.0,
        gt=0,
        description="Longest an SSE stream stays open (less 0-20 % jitter); the browser "
        "then reconnects.",
    )
    sse_max_clients: int = Field(
        20_000, ge=1, description="Most open SSE streams per process; more get 503."
    )
    sse_max_streams_per_client: int = Field(
        16,
        ge=1,
        description="Most open SSE streams per client address (IPv6: per /64) per process; "
        "more get 429.",
    )
    trending_cache_ms: int = Field(
        1000,
        ge=0,
        le=60_000,
        description="How long a merged 5-minute trending list is reused; a 1 h list 2.5 "
        "times as long, a 24 h list 60 times.",
    )
