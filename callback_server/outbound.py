"""Clients' webhooks through the contract's outbound client (orfeas_contract.outbound), off the loop.

That client resolves the receiver's name once, refuses it unless every address passes the address
policy (orfeas_contract.netguard; ORFEAS_ALLOW_PRIVATE_WEBHOOKS lifts it), and connects only to
the address it checked, so no second DNS answer is ever asked for (rebinding). Redirects are not
followed: a 3xx could point anywhere.

The client blocks (http.client), so each POST runs in a thread of its own pool, never on the event
loop nor in the loop's default executor (the store's and the resolvers' work runs there). The pool
has as many threads as deliveries may run at once (callback_server/deliveries.py), so a hanging
receiver holds one thread for at most its deadline and never delays another client's webhook.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from orfeas_contract.outbound import OutboundClient

THREADS = 256


class WebhookPoster:
    """POSTs to clients' webhooks with `client`, in at most `threads` threads at once."""

    def __init__(self, client: OutboundClient, threads: int = THREADS) -> None:
        self.client = client
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="client-webhook")

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
        """The receiver's HTTP status; the client's errors (orfeas_contract.outbound) when none."""
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._post, url, body, headers, timeout_s
        )

    def _post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> int:
        with self.client.open("POST", url, timeout_s=timeout_s, body=body, headers=headers) as response:
            return response.status  # the body is not read: the status is the answer

    def close(self) -> None:
        """No new POST starts; one in flight ends by its own deadline."""
        self._pool.shutdown(wait=False, cancel_futures=True)
