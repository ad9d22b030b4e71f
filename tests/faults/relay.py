"""A TCP relay between the services and a server, for fault tests that move or freeze the
network: `python -m tests.faults.relay --listen PORT --target HOST:PORT [--target-file F]`.

It prints `ready PORT` on stdout once it listens. On SIGHUP it reads its new target from the
target file (`HOST:PORT`), drops every open connection (clients reconnect, to the new
target) and prints `retargeted HOST:PORT`. SIGSTOP freezes it (bytes stop flowing, no
connection breaks) and SIGCONT thaws it. SIGTERM or SIGINT close everything; it exits 0.
Diagnostics go to stderr; stdout carries only those lines, which `Relay` waits for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 5.0


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` as a (host, port) pair."""
    host, _, port = text.strip().rpartition(":")
    return host or "127.0.0.1", int(port)


class RelayServer:
    """Accepts connections on `listen` and pipes each to the current target."""

    def __init__(self, listen: int, target: tuple[str, int], target_file: Path | None) -> None:
        self.listen = listen
        self.target = target
        self.target_file = target_file
        self.links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.stopping = asyncio.Event()

    async def serve(self) -> None:
        """Relay until SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.retarget)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen)
        _say(f"ready {self.listen}")
        async with server:
            await self.stopping.wait()
            server.close()
            self.drop_all()
            await server.wait_closed()

    def retarget(self) -> None:
        """Take the target from the target file and drop every open connection."""
        if self.target_file is not None:
            self.target = parse_address(self.target_file.read_text())
        self.drop_all()
        _say(f"retargeted {self.target[0]}:{self.target[1]}")

    def drop_all(self) -> None:
        """Reset every connection, both sides, as a failed network path would."""
        for client, upstream in list(self.links):
            client.transport.abort()
            upstream.transport.abort()
        self.links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as exc:
            sys.stderr.write(f"relay: cannot reach {self.target}: {exc!r}\n")
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self.links.add(link)
        pipes = [
            asyncio.create_task(_pipe(reader, up_writer)),
            asyncio.create_task(_pipe(up_reader, writer)),
        ]
        try:
            # One side closing ends the link: Redis and Kafka clients never half-close.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            self.links.discard(link)
            for side in link:
                side.transport.abort()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await source.read(CHUNK):
            sink.write(data)
            await sink.drain()


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Relay:
    """Runs the relay as a process of its own, so a test can retarget, freeze and stop it."""

    def __init__(self, port: int, target: tuple[str, int], work_dir: Path) -> None:
        self.port = port
        self.target = target
        self.work_dir = work_dir
        self.target_file = work_dir / f"relay-{port}.target"
        self.process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str] = queue.Queue()

    @property
    def url(self) -> str:
        """A Redis URL through the relay."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the relay and wait until it listens."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.target_file.write_text(f"{self.target[0]}:{self.target[1]}")
        log = (self.work_dir / f"relay-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.faults.relay",
                "--listen",
                str(self.port),
                "--target",
                f"{self.target[0]}:{self.target[1]}",
                "--target-file",
                str(self.target_file),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        log.close()
        assert self.process.stdout is not None
        threading.Thread(target=self._read_lines, args=(self.process.stdout,), daemon=True).start()
        self._expect(f"ready {self.port}", timeout)

    def retarget(self, host: str, port: int, timeout: float = 10.0) -> None:
        """Point the relay at another server; open connections are dropped."""
        self.target = (host, port)
        self.target_file.write_text(f"{host}:{port}")
        self._signal(signal.SIGHUP)
        self._expect(f"retargeted {host}:{port}", timeout)

    def freeze(self) -> None:
        """Stop every byte in both directions (SIGSTOP), connections stay open."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let bytes flow again (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> int | None:
        """Close every connection and exit; its exit status (None if it was not running).
        Safe to call twice."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # a frozen relay cannot handle SIGTERM
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        return process.returncode

    def _signal(self, sig: int) -> None:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("the relay is not running")
        os.kill(self.process.pid, sig)

    def _read_lines(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.strip())

    def _expect(self, line: str, timeout: float) -> None:
        try:
            while (got := self._lines.get(timeout=timeout)) != line:
                sys.stderr.write(f"relay said {got!r}, waiting for {line!r}\n")
        except queue.Empty:
            raise AssertionError(f"the relay did not say {line!r} within {timeout}s") from None


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and relay until told to stop."""
    parser = argparse.ArgumentParser(prog="python -m tests.faults.relay", description=__doc__)
    parser.add_argument("--listen", type=int, required=True, help="port to listen on")
    parser.add_argument("--target", required=True, help="HOST:PORT to relay to")
    parser.add_argument("--target-file", type=Path, help="read again on SIGHUP")
    args = parser.parse_args(argv)
    relay = RelayServer(args.listen, parse_address(args.target), args.target_file)
    asyncio.run(relay.serve())


if __name__ == "__main__":
    main()
