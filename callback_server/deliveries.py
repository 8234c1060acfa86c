"""Deliver clients' own webhooks from the outbox (leader only), Standard Webhooks signed.

A terminal event is retried with exponential backoff (5 s, 10 s, 20 s … capped at one hour,
8 attempts, about 21 minutes in all before the cap matters); a progress event is sent once, as
a later one supersedes it. Addresses that resolve to private networks are refused unless
ORFEAS_ALLOW_PRIVATE_WEBHOOKS is set, at submit and again by the pinned session's resolver
(callback_server/outbound.py), which connects only to the addresses it checked.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import aiohttp

from callback_server.outbound import RefusedAddress, check_literal
from callback_server.runtime import Runtime
from callback_server.store.base import Delivery, StaleEpoch
from orfeas import webhook_signing

log = logging.getLogger("callback_server.deliveries")

MAX_ATTEMPTS = 8
FIRST_BACKOFF_S = 5.0
MAX_BACKOFF_S = 3600.0
BATCH = 50
IDLE_SLEEP_S = 1.0


def next_attempt_at(delivery: Delivery, now: float) -> float | None:
    """When to try again, or None to stop (sent, not terminal, or out of attempts)."""
    attempts = delivery.attempts + 1
    if not delivery.terminal or attempts >= MAX_ATTEMPTS:
        return None
    return now + min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (attempts - 1))


async def send(runtime: Runtime, delivery: Delivery) -> bool:
    """One attempt; True when the client answered 2xx."""
    session = runtime.webhook_session
    assert session is not None
    s = runtime.settings
    try:
        check_literal(urlsplit(delivery.url).hostname or "", allow_private=s.allow_private_webhooks)
    except RefusedAddress as exc:
        log.warning("client webhook refused: %s", exc, extra={"job_id": delivery.job_id})
        return False
    headers = {"Content-Type": "application/json"}
    if s.webhook_secret:
        headers.update(webhook_signing.signature_headers(s.webhook_secret, delivery.msg_id, delivery.body))
    else:
        headers["webhook-id"] = delivery.msg_id
    try:
        async with session.post(
            delivery.url,
            data=delivery.body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=s.upstream_timeout_s),
            allow_redirects=False,
        ) as resp:
            return 200 <= resp.status < 300
    except RefusedAddress as exc:  # the pinned resolver's verdict (see callback_server/outbound.py)
        log.warning("client webhook refused: %s", exc, extra={"job_id": delivery.job_id})
        return False
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.info("client webhook failed: %s", exc, extra={"job_id": delivery.job_id})
        return False


async def deliver_due(runtime: Runtime, epoch: int) -> int:
    store = runtime.store
    due = await store.due_deliveries(runtime.clock(), BATCH)
    for delivery in due:
        ok = await send(runtime, delivery)
        runtime.metrics.inc("orfeas_deliveries_total", result="ok" if ok else "failed")
        retry_at = None if ok else next_attempt_at(delivery, runtime.clock())
        await store.finish_delivery(delivery.id, ok=ok, next_attempt_at=retry_at, epoch=epoch)
    return len(due)


async def deliver_forever(runtime: Runtime, epoch: int) -> None:
    while True:
        try:
            sent = await deliver_due(runtime, epoch)
        except StaleEpoch:
            log.warning("epoch %s is stale: deliveries stop", epoch)
            return
        except Exception:
            log.exception("delivering client webhooks failed; trying again")
            sent = 0
        if sent < BATCH:
            await asyncio.sleep(IDLE_SLEEP_S)
