"""The fault tests' TCP relay: it relays, retargets (dropping open connections), freezes,
thaws and stops cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from deploy.local.process import free_port
from tests.faults.relay import Relay


async def _named_server(name: str) -> asyncio.Server:
    """A server that answers every line with its name and the line."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(f"{name}:{line.decode()}".encode())
            await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


def _port(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


@pytest.fixture
async def servers() -> AsyncIterator[tuple[asyncio.Server, asyncio.Server]]:
    first, second = await _named_server("A"), await _named_server("B")
    yield first, second
    for server in (first, second):
        server.close()


async def _ask(port: int, line: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{line}\n".encode())
    answer = await asyncio.wait_for(reader.readline(), 10)
    return reader, writer, answer.decode().strip()


async def test_the_relay_relays_retargets_freezes_and_stops(
    servers: tuple[asyncio.Server, asyncio.Server], tmp_path: Path
) -> None:
    first, second = servers
    relay = Relay(free_port(), ("127.0.0.1", _port(first)), tmp_path)
    await asyncio.to_thread(relay.start)
    try:
        reader, writer, answer = await _ask(relay.port, "x")
        assert answer == "A:x"

        await asyncio.to_thread(relay.retarget, "127.0.0.1", _port(second))
        # The open connection was dropped; a new one reaches the new target.
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        reader, writer, answer = await _ask(relay.port, "y")
        assert answer == "B:y"

        relay.freeze()
        writer.write(b"z\n")
        with pytest.raises(TimeoutError):  # nothing flows while frozen
            await asyncio.wait_for(reader.readline(), 0.5)
        relay.thaw()
        assert await asyncio.wait_for(reader.readline(), 10) == b"B:z\n"
        writer.close()
    finally:
        status = await asyncio.to_thread(relay.stop)
    assert status == 0
    assert relay.stop() is None
