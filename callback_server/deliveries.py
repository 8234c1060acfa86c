"""Deliver clients' own webhooks from the outbox (leader only), Standard Webhooks signed.

A terminal event is retried with exponential backoff (5 s, 10 s, 20 s … capped at one hour,
8 attempts, about 21 minutes in all before the cap matters); a progress event is sent once, as
a later one supersedes it. Deliveries run concurrently (Dispatcher), at most PER_HOST at once
to one receiver. Addresses that resolve to private networks are refused unless
ORFEAS_ALLOW_PRIVATE_WEBHOOKS is set, at submit and again by the outbound client at each attempt
(callback_server/outbound.py), which connects only to the addresses it checked.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from urllib.parse import urlsplit

from callback_server.outbound import THREADS
from callback_server.runtime import Runtime
from callback_server.store.base import Delivery, StaleFence
from orfeas_contract import webhook_signing
from orfeas_contract.outbound import InvalidURL, OutboundError, RefusedAddress

log = logging.getLogger("callback_server.deliveries")

MAX_ATTEMPTS = 8
FIRST_BACKOFF_S = 5.0
MAX_BACKOFF_S = 3600.0
BATCH = 50
IDLE_SLEEP_S = 1.0
# Deliveries running at once to one receiver (scheme, host, port), and in all. Four keep a slow
# receiver's backlog moving without letting it take every slot.
PER_HOST = 4
MAX_IN_FLIGHT = THREADS  # one thread each (callback_server/outbound.py)


def next_attempt_at(delivery: Delivery, now: float) -> float | None:
    """When to try again, or None to stop (sent, not terminal, or out of attempts)."""
    attempts = delivery.attempts + 1
    if not delivery.terminal or attempts >= MAX_ATTEMPTS:
        return None
    backoff: float = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (attempts - 1))
    return now + backoff


async def send(runtime: Runtime, delivery: Delivery) -> bool:
    """One attempt; True when the client answered 2xx."""
    poster = runtime.webhooks
    assert poster is not None
    s = runtime.settings
    headers = {"Content-Type": "application/json"}
    if s.webhook_secret:
        headers.update(webhook_signing.signature_headers(s.webhook_secret, delivery.msg_id, delivery.body))
    else:
        headers["webhook-id"] = delivery.msg_id
    try:
        status = await poster.post(delivery.url, delivery.body, headers, s.upstream_timeout_s)
    except (RefusedAddress, InvalidURL) as exc:
        log.warning("client webhook refused: %s", exc, extra={"job_id": delivery.job_id})
        return False
    except OutboundError as exc:  # no answer, or too late: retried per next_attempt_at
        log.info("client webhook failed: %s", exc, extra={"job_id": delivery.job_id})
        return False
    return 200 <= status < 300


def host_key(url: str) -> str:
    """The receiver a delivery goes to, for the per-host bound: scheme, host and port."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port or ''}"


class Dispatcher:
    """Runs each delivery as its own task, at most PER_HOST at once per receiver and MAX_IN_FLIGHT
    in all, so one hanging receiver delays no other client's webhook (one at a time, four hanging
    receivers held another client's job.completed for 54 s)."""

    def __init__(self, runtime: Runtime, fence: int) -> None:
        self.runtime = runtime
        self.fence = fence
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.per_host: Counter[str] = Counter()
        self.stale = False  # finish_delivery said the fence is stale: stop

    def start(self, due: list[Delivery]) -> int:
        """Start the deliveries in `due` not already running and within the bounds; how many started."""
        started = 0
        for delivery in due:
            host = host_key(delivery.url)
            if (
                delivery.id in self.tasks
                or self.per_host[host] >= PER_HOST
                or len(self.tasks) >= MAX_IN_FLIGHT
            ):
                continue
            self.per_host[host] += 1
            self.tasks[delivery.id] = asyncio.create_task(self._deliver(delivery, host))
            started += 1
        return started

    async def _deliver(self, delivery: Delivery, host: str) -> None:
        runtime = self.runtime
        try:
            ok = await send(runtime, delivery)
            runtime.metrics.inc("orfeas_deliveries_total", result="ok" if ok else "failed")
            retry_at = None if ok else next_attempt_at(delivery, runtime.clock())
            await runtime.store.finish_delivery(
                delivery.id, ok=ok, next_attempt_at=retry_at, fence=self.fence
            )
        except StaleFence:
            self.stale = True
        except Exception:
            log.exception("delivering a client webhook failed", extra={"job_id": delivery.job_id})
        finally:
            self.per_host[host] -= 1
            self.tasks.pop(delivery.id, None)

    async def wait_any(self) -> None:
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), return_when=asyncio.FIRST_COMPLETED)

    async def close(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _fetch(dispatcher: Dispatcher) -> list[Delivery]:
    # Running deliveries are still pending rows: ask for that many more, so rows stuck behind a
    # busy receiver do not hide the ones after them.
    runtime = dispatcher.runtime
    return await runtime.store.due_deliveries(runtime.clock(), BATCH + len(dispatcher.tasks))


async def deliver_due(runtime: Runtime, fence: int) -> int:
    """Deliver everything due now, concurrently within the bounds, and wait for it; how many were tried."""
    dispatcher = Dispatcher(runtime, fence)
    tried = 0
    try:
        while True:
            tried += dispatcher.start(await _fetch(dispatcher))
            if not dispatcher.tasks:
                break
            await dispatcher.wait_any()
            if dispatcher.stale:
                raise StaleFence(f"fence {fence} is stale")
    finally:
        await dispatcher.close()
    return tried


async def deliver_forever(runtime: Runtime, fence: int) -> None:
    dispatcher = Dispatcher(runtime, fence)
    try:
        while not dispatcher.stale:
            try:
                started = dispatcher.start(await _fetch(dispatcher))
            except Exception:
                log.exception("reading due client webhooks failed; trying again")
                started = 0
            if started < BATCH:
                await asyncio.sleep(IDLE_SLEEP_S)
        log.warning("fence %s is stale: deliveries stop", fence)
    finally:
        await dispatcher.close()
