"""Who the client is behind the edge: the TCP peer, or the address a trusted proxy forwarded.

Both HTTP services need it (ingest for its rate limits, the reader for its per-client stream
cap), and both must agree on which proxies to believe.
"""

from __future__ import annotations

import ipaddress

from starlette.types import Scope

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: object) -> object:
    """CIDRs from a comma-separated setting; anything else is left for validation."""
    if isinstance(value, str):
        return tuple(
            ipaddress.ip_network(cidr.strip(), strict=False)
            for cidr in value.split(",")
            if cidr.strip()
        )
    return value


def client_ip(scope: Scope, trusted: tuple[IpNetwork, ...]) -> str:
    """The client's address: the TCP peer, unless the peer is a trusted proxy.

    Behind trusted proxies, X-Forwarded-For is read right to left and the first hop that
    is not itself a trusted proxy is the client (hops further left are client-supplied).
    """
    client = scope.get("client")
    peer = client[0] if client else ""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = [
        hop.strip()
        for name, value in scope["headers"]
        if name == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
    ]
    current = peer
    for hop in reversed(hops):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            break  # a malformed hop: trust nothing further left
        current = str(address)
        if not _is_trusted(current, trusted):
            break
    return current


def _is_trusted(address: str, trusted: tuple[IpNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
