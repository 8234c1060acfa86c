"""Refuse outbound connections to private, loopback, link-local and metadata addresses (SSRF).

Names are resolved first and every address they resolve to is checked; callers then connect to
the checked address itself, so a second DNS answer (rebinding) cannot slip a private one in.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from orfeas.errors import InvalidInput

Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # is_global is False for private, loopback, link-local (169.254.0.0/16, the cloud metadata
    # service), shared (100.64/10), reserved and unspecified ranges.
    return ip.is_global and not ip.is_multicast


def resolve_public(
    host: str, port: int, *, field: str, resolver: Resolver = system_resolver, allow_private: bool = False
) -> list[str]:
    """Resolve `host` and return its addresses, refusing with InvalidInput if any is not public."""
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise InvalidInput(f"cannot resolve host {host!r}: {exc}", field=field) from None
    if not addresses:
        raise InvalidInput(f"host {host!r} has no address", field=field)
    if not allow_private:
        for address in addresses:
            if not is_public_address(address):
                raise InvalidInput(f"host {host!r} resolves to a non-public address ({address})", field=field)
    return addresses
