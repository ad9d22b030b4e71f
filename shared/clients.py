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


def client_network(address: str, prefix_v4: int = 32, prefix_v6: int = 64) -> str:
    """The network a client address is counted by: `address/prefix` with host bits zeroed.

    One IPv6 subscriber usually holds a whole /64, so counting single v6 addresses would
    let one client rotate through billions of them. IPv4-mapped v6 addresses count as v4.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (a unix socket peer): counted as itself
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = prefix_v4 if ip.version == 4 else prefix_v6
    if prefix == ip.max_prefixlen:
        return str(ip)  # the default for IPv4, and the cheap path of every write
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _is_trusted(address: str, trusted: tuple[IpNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
