"""The edge of the local stack: Debian's nginx with the reference config in deploy/nginx/,
in front of the reader and (on a port of its own) ingest, as an ordinary non-daemon
process with its pid, temp and cache files under the stack's directory (so it needs no
root and leaves nothing elsewhere)."""

from __future__ import annotations

import os
import pwd
import shutil
import string
from dataclasses import dataclass
from pathlib import Path

from deploy.local.process import ROOT, Process, StackError, port_open, wait_for

TEMPLATE = ROOT / "deploy" / "nginx" / "reactions.conf.template"
INGEST_TEMPLATE = ROOT / "deploy" / "nginx" / "ingest.conf.template"

# The main configuration around the reference include; the official image has its own.
MAIN_CONF = """\
${user}worker_processes 1;
pid ${dir}/nginx.pid;
error_log stderr warn;
events {
    worker_connections 4096;
}
http {
    access_log ${dir}/access.log;
    client_body_temp_path ${dir}/tmp/body;
    proxy_temp_path ${dir}/tmp/proxy;
    fastcgi_temp_path ${dir}/tmp/fastcgi;
    uwsgi_temp_path ${dir}/tmp/uwsgi;
    scgi_temp_path ${dir}/tmp/scgi;
    include ${dir}/reactions.conf;
${ingest}}
"""


# How long the edge keeps a page's bulk read (an nginx time): its first paint, corrected
# by the page's stream at connect.
EDGE_PAGE_TTL = "30s"
# How long a client of the write edge may take to send a request's headers, or between two
# reads of its body.
EDGE_CLIENT_TIMEOUT = "10s"


@dataclass(frozen=True)
class IngestEdge:
    """The edge's server in front of ingest: its own port, and ingest's host:port."""

    port: int
    upstream: str
    client_timeout: str = EDGE_CLIENT_TIMEOUT


def render_edge_config(
    state_dir: Path,
    port: int,
    reader: str,
    page_ttl: str = EDGE_PAGE_TTL,
    ingest: IngestEdge | None = None,
) -> Path:
    """Write the reference includes (the reader's, filled in with `port` and the `reader`
    host:port, and ingest's when given) and a main configuration for them under
    `state_dir`; the main file's path."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "tmp").mkdir(exist_ok=True)
    include = string.Template(TEMPLATE.read_text()).safe_substitute(
        REACTIONS_EDGE_PORT=f"127.0.0.1:{port}",
        REACTIONS_READER_UPSTREAM=reader,
        REACTIONS_EDGE_CACHE_DIR=str(state_dir / "cache"),
        REACTIONS_EDGE_PAGE_TTL=page_ttl,
    )
    (state_dir / "reactions.conf").write_text(include)
    includes = ""
    if ingest is not None:
        (state_dir / "ingest.conf").write_text(
            string.Template(INGEST_TEMPLATE.read_text()).safe_substitute(
                REACTIONS_EDGE_INGEST_PORT=f"127.0.0.1:{ingest.port}",
                REACTIONS_INGEST_UPSTREAM=ingest.upstream,
                REACTIONS_EDGE_CLIENT_TIMEOUT=ingest.client_timeout,
            )
        )
        includes = f"    include {state_dir}/ingest.conf;\n"
    # Run by root, nginx would hand its workers to `nobody`, who cannot reach the stack's
    # files: keep them as the user who started the stack.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    main = string.Template(MAIN_CONF).substitute(dir=state_dir, user=user, ingest=includes)
    path = state_dir / "nginx.conf"
    path.write_text(main)
    return path


class NginxEdge:
    """nginx on `port` in front of the reader on `reader_port`, and in front of ingest when
    `ingest` is given; files in `state_dir`."""

    def __init__(
        self,
        state_dir: Path,
        port: int,
        reader_port: int,
        page_ttl: str = EDGE_PAGE_TTL,
        ingest: IngestEdge | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.port = port
        self.reader_port = reader_port
        self.page_ttl = page_ttl
        self.ingest = ingest
        # Its server for the reader's port, and for ingest's when it fronts ingest.
        self.ports = [port] if ingest is None else [port, ingest.port]
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.conf = state_dir / "nginx.conf"
        self.process = Process(
            "edge",
            [binary, "-p", str(state_dir), "-c", str(self.conf), "-g", "daemon off;"],
            self.ports,
            state_dir / "edge.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ingest_url(self) -> str:
        """The write edge's URL; only when the edge fronts ingest."""
        if self.ingest is None:
            raise StackError("this edge does not front ingest")
        return f"http://127.0.0.1:{self.ingest.port}"

    def start(self, timeout: float = 20.0) -> None:
        if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
            raise StackError("nginx is not installed; run `make setup`")
        render_edge_config(
            self.state_dir, self.port, f"127.0.0.1:{self.reader_port}", self.page_ttl, self.ingest
        )
        self.process.start()

        def ready() -> bool:
            self.process.check_alive()
            return all(port_open(p) for p in self.ports)

        wait_for(ready, timeout, f"nginx on port {self.port}")

    def stop(self) -> None:
        self.process.stop()
