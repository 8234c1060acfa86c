"""Client webhook deliveries through the contract's outbound client, off the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from callback_server.deliveries import send
from callback_server.store.base import Delivery
from orfeas_contract.outbound import OutboundClient
from tests.cb_fakes import CbEnv, WebhookSink


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[CbEnv]:
    cb = CbEnv(tmp_path)
    yield cb
    await cb.close()


def _delivery(url: str) -> Delivery:
    return Delivery(1, "job-1", url, b"{}", "msg-1", 0, True, 0.0)


@pytest.mark.asyncio
async def test_a_hanging_receiver_costs_its_deadline_and_never_the_event_loop(env):
    """A receiver that never answers fails the attempt at the 0.5 s deadline, while the loop keeps
    running other work every 10 ms (the POST runs in a thread)."""
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hang)
    server = await env.serve(app)
    h = await env.harness(upstream_timeout_s=0.5)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    try:
        assert await send(h.runtime, _delivery(f"http://127.0.0.1:{server.port}/hook")) is False
    finally:
        ticker.cancel()
        release.set()
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 2.0
    assert ticks >= 20  # of ~50 in 0.5 s; a POST on the loop would leave it at 0


@pytest.mark.asyncio
async def test_each_attempt_resolves_once_and_connects_to_that_answer(env):
    """A rebinding name (loopback first, then a private address) is delivered to the address the
    attempt checked, asked once; the next attempt is judged on its own answer and refused."""
    sink = WebhookSink()
    server = await env.serve(sink.app())
    h = await env.harness()
    answers = iter([["127.0.0.1"], ["10.0.0.7"]])
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    assert h.runtime.webhooks is not None
    h.runtime.webhooks.client = OutboundClient(resolver=rebinding, allow_address=lambda a: a == "127.0.0.1")
    url = f"http://hooks.orfeas.test:{server.port}/hook"
    assert await send(h.runtime, _delivery(url)) is True
    assert asked == ["hooks.orfeas.test"]
    assert sink.received[0][0]["Host"] == f"hooks.orfeas.test:{server.port}"
    assert await send(h.runtime, _delivery(url)) is False
    assert asked == ["hooks.orfeas.test"] * 2
    assert len(sink.received) == 1
