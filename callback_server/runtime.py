"""What every handler and background task shares: settings, store, upstream client, metrics, role.

The store opens in the background (the port is bound first); handlers that need it wait for it
at most `store_wait_s` and then answer 503, so a 200 is never given without a durable write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from callback_server.metrics import Metrics
from callback_server.outbound import WebhookPoster
from callback_server.settings import ServerSettings
from callback_server.store.store import Store
from callback_server.upstream import RunPodClient
from orfeas_contract.outbound import OutboundClient

log = logging.getLogger("callback_server")


class StoreNotReady(Exception):
    """The store did not open within the bounded wait."""


@dataclass
class Runtime:
    settings: ServerSettings
    store: Store
    metrics: Metrics = field(default_factory=Metrics)
    clock: Callable[[], float] = time.time
    store_ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when shutdown begins: long-polls and event streams answer with what they have and end,
    # so in-flight requests finish at once and the lease is released without waiting for them.
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    store_error: str | None = None
    role: str = "passive"
    fence: int | None = None
    upstream: RunPodClient | None = None
    session: aiohttp.ClientSession | None = None
    # Clients' webhooks: every connection to an address checked by the worker's policy.
    webhooks: WebhookPoster | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    # Transient: job ids with an upstream refresh in flight in this process (never grows past
    # the number of concurrent requests).
    refreshing: dict[str, asyncio.Task[Any]] = field(default_factory=dict)

    async def ready_store(self) -> Store:
        if not self.store_ready.is_set():
            try:
                async with asyncio.timeout(self.settings.store_wait_s):
                    await self.store_ready.wait()
            except TimeoutError:
                raise StoreNotReady(self.store_error or "the store is still opening") from None
        return self.store

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run `coro` in the background, tracked so shutdown cancels and awaits it."""
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def cancel_tasks(self) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def set_role(self, role: str, fence: int | None) -> None:
        self.role, self.fence = role, fence
        self.metrics.set("orfeas_leader", 1 if role == "leader" else 0)

    def open_session(self) -> None:
        """The outbound HTTP session and the upstream client (cheap: no I/O happens here)."""
        self.session = aiohttp.ClientSession()
        s = self.settings
        self.webhooks = WebhookPoster(OutboundClient(allow_private=s.allow_private_webhooks))
        if s.runpod_endpoint_url:
            self.upstream = RunPodClient(
                self.session,
                s.runpod_endpoint_url,
                s.runpod_api_key,
                local=s.runpod_local,
                timeout_s=s.upstream_timeout_s,
                metrics=self.metrics,
            )


RUNTIME = web.AppKey("runtime", Runtime)


async def wait_for_change(runtime: Runtime, store: Store, job_id: str, since: float, wait_s: float) -> None:
    """`store.wait_for_change`, cut short when the server starts shutting down."""
    if runtime.stopping.is_set():
        return
    changed = asyncio.ensure_future(store.wait_for_change(job_id, since, wait_s))
    stopping = asyncio.ensure_future(runtime.stopping.wait())
    try:
        await asyncio.wait({changed, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (changed, stopping):
            task.cancel()
        await asyncio.gather(changed, stopping, return_exceptions=True)
    if changed.done() and not changed.cancelled() and changed.exception() is not None:
        raise changed.exception()  # type: ignore[misc]


def json_error(
    status: int, code: str, message: str, *, field: str | None = None, **extra: Any
) -> web.Response:
    """The API's error answer: {"error": {"code", "message", "field"?}, ...extra}."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return web.json_response({"error": error, **extra}, status=status)
