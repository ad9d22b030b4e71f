"""Reader settings: the only place the reader service reads the environment."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class ReaderSettings(CommonSettings):
    """Settings of the read path."""

    host: str = Field("127.0.0.1", description="Interface the reader service binds.")
    reader_port: int = Field(8001, ge=1, le=65535, description="Reader HTTP port.")
    allowed_origins: str = Field("*", description="CORS allow-list, comma-separated.")
