"""The server's pinned outbound client for clients' webhooks: the address policy of the worker
(orfeas_contract.netguard) applied where aiohttp resolves, so what is checked is what is connected to.

aiohttp asks its resolver once per new connection and connects only to the addresses it returns;
`PinnedResolver` resolves, refuses the name unless every address is public (as the worker's
picture fetch and webhooks do: one private answer refuses the whole name, so DNS rebinding between
two answers gains nothing), and returns those same checked addresses. Address literals never reach
a resolver in aiohttp, so `check_literal` judges them before the request. The DNS cache is off:
each new connection is checked afresh. Redirects are not followed (deliveries pass
allow_redirects=False): a 3xx could point anywhere.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from orfeas_contract.netguard import is_public_address


class RefusedAddress(aiohttp.ClientConnectionError):
    """The webhook's host is, or resolves to, an address the policy refuses."""


def check_literal(host: str, *, allow_private: bool) -> None:
    """Refuse an address-literal host that is not public (names are judged by the resolver)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if not allow_private and not is_public_address(host.strip("[]")):
        raise RefusedAddress(f"address {host} is not public")


class PinnedResolver(AbstractResolver):
    def __init__(self, *, allow_private: bool = False, inner: AbstractResolver | None = None) -> None:
        self.allow_private = allow_private
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        inner = self._inner or aiohttp.ThreadedResolver()
        try:
            results = await inner.resolve(host, port, family)
        finally:
            if self._inner is None:
                await inner.close()
        if not results:
            raise RefusedAddress(f"host {host!r} has no address")
        if not self.allow_private:
            for result in results:
                if not is_public_address(result["host"]):
                    raise RefusedAddress(f"host {host!r} resolves to a non-public address ({result['host']})")
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def pinned_session(*, allow_private: bool, **kwargs: Any) -> aiohttp.ClientSession:
    """A session whose every connection goes to an address checked by `PinnedResolver`."""
    connector = aiohttp.TCPConnector(
        resolver=PinnedResolver(allow_private=allow_private), use_dns_cache=False
    )
    return aiohttp.ClientSession(connector=connector, **kwargs)
