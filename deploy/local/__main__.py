"""Start and stop the local stack: a real KRaft Kafka broker, a real redis-server, the
three services and the nginx edge in front of the reader, without Docker. Used by
`make run/up/down/status/up-cluster/down-cluster`.

`python -m deploy.local run` runs everything in the foreground until Ctrl-C; `up` starts
whatever part is not running and returns; `down` stops everything (safe to run twice);
`up-cluster` and `down-cluster` do the same for the scaled-out stack; `keys --dir DIR`
makes a development signing key, its JWKS and a salt once (docker-compose runs it).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from deploy.local.keys import DEVELOPMENT_KID, ensure_secrets
from deploy.local.process import StackError
from deploy.local.stack import ClusterPorts, ClusterStack, LocalSettings, Stack, StackConfig


def cluster_main(command: str) -> int:
    """`up-cluster` / `down-cluster` for the scaled-out local stack."""
    local = LocalSettings()
    stack = ClusterStack(
        local.stack_dir / "cluster", ClusterPorts.from_base(local.cluster_base_port)
    )
    out = sys.stdout.write
    if command == "down-cluster":
        stack.down()
        out("cluster stopped\n")
        return 0
    try:
        started = stack.up()
    except StackError as exc:
        out(f"error: {exc}\n")
        return 1
    out(f"started: {', '.join(started) or 'nothing (all parts were running)'}\n")
    out(f"  kafka bootstrap     {stack.kafka.bootstrap}\n")
    out(f"  redis cluster       {stack.redis.url}\n")
    for service in stack.services:
        out(f"  {service.name:<19} {service.url}\n")
    return 0


def keys_main(argv: list[str]) -> int:
    """`keys --dir DIR [--public-dir DIR] [--kid KID]`: development keys and salt, once."""
    parser = argparse.ArgumentParser(prog="python -m deploy.local keys")
    parser.add_argument("--dir", required=True, help="signing key, JWKS and salt go here")
    parser.add_argument("--public-dir", help="a copy of the JWKS for verifying services")
    parser.add_argument("--kid", default=DEVELOPMENT_KID, help="key id of a new key")
    args = parser.parse_args(argv)
    public = Path(args.public_dir) if args.public_dir else None
    keys = ensure_secrets(Path(args.dir), public, args.kid)
    sys.stdout.write(f"signing key {keys.signing_key_file}, public keys {keys.public_keys_file}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`run`, `up`, `down` or `status` for the local stack; `up-cluster`, `down-cluster`;
    `keys`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["keys"]:
        return keys_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__)
    parser.add_argument(
        "command", choices=["run", "up", "down", "status", "up-cluster", "down-cluster", "keys"]
    )
    args = parser.parse_args(argv)
    if args.command.endswith("-cluster"):
        return cluster_main(args.command)
    stack = Stack(StackConfig.from_settings())
    out = sys.stdout.write
    if args.command == "down":
        stack.down()
        out("stack stopped\n")
        return 0
    if args.command == "status":
        for name, pid in stack.status().items():
            out(f"{name:<11} {'running, pid ' + str(pid) if pid else 'stopped'}\n")
        return 0
    try:
        started = stack.up()
    except StackError as exc:
        out(f"error: {exc}\n")
        if args.command == "run":
            stack.down()
        return 1
    out(f"started: {', '.join(started) or 'nothing (all parts were running)'}\n")
    for name, url in stack.urls().items():
        out(f"  {name:<19} {url}\n")
    out(f"logs in {stack.config.state_dir}\n")
    if args.command == "run":
        run_until_stopped(stack)
    return 0


def run_until_stopped(stack: Stack) -> None:
    """Watch the stack until Ctrl-C (or SIGTERM) or until a part dies; then stop it all."""
    out = sys.stdout.write
    out("running; press Ctrl-C to stop everything\n")
    stopping = False

    def on_signal(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stopping:
            for name, process in stack.parts():
                if process.pid() is None:
                    out(f"{name} stopped unexpectedly; see {process.log_path}\n")
                    stopping = True
            time.sleep(0.5)
    finally:
        out("stopping…\n")
        stack.down()
        out("stack stopped\n")


if __name__ == "__main__":
    raise SystemExit(main())
