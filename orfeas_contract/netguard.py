"""Refuse outbound connections to private, loopback, link-local and metadata addresses (SSRF).

The policy only: orfeas_contract.outbound resolves names, checks every address they resolve to
with `is_public_address`, and connects to the checked address itself, so a second DNS answer
(rebinding) cannot slip a private one in.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# IPv6 forms that carry an IPv4 address a packet may end up at: NAT64 (RFC 6052, the well-known
# prefix; a DNS64 resolver hands these out for every IPv4-only name) and the deprecated
# IPv4-compatible ::/96. They are judged by the IPv4 address inside, so 64:ff9b::a9fe:a9fe is the
# metadata service, not a public address. RFC 8215's local-use 64:ff9b:1::/48 has no fixed place
# for the IPv4 part and is never public.
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _effective(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address that decides: the IPv4 address inside a mapped, 6to4, NAT64 or compatible one."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:  # 2002:AABB:CCDD::/48 routes to the 6to4 relay of A.B.C.D
        return ip.sixtofour
    if ip in _NAT64_WELL_KNOWN or ip in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64_LOCAL_USE:
        return False
    ip = _effective(ip)
    # is_global is False for private, loopback, link-local (169.254.0.0/16, the cloud metadata
    # service), shared (100.64/10), reserved and unspecified ranges.
    return ip.is_global and not ip.is_multicast
