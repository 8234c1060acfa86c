"""Leadership on the store's lease: one leader among instances, takeover, loss on errors, release on stop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from callback_server.leader import Leadership
from callback_server.store import LEADER_LEASE, Store
from orfeas.errors import StorageError
from tests.store_support import StoreMaker

pytestmark = pytest.mark.asyncio


class FlakyStore:
    """A real store whose lease calls can be made to fail (`failing`) or hang (`held` cleared)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.failing = False
        self.held = asyncio.Event()
        self.held.set()

    async def _gate(self) -> None:
        await self.held.wait()
        if self.failing:
            raise StorageError("database unreachable", field="DATABASE_URL")

    async def acquire_lease(self, *args: Any) -> int | None:
        await self._gate()
        return await self.inner.acquire_lease(*args)

    async def renew_lease(self, *args: Any) -> bool:
        await self._gate()
        return await self.inner.renew_lease(*args)

    async def release_lease(self, *args: Any) -> None:
        await self._gate()
        await self.inner.release_lease(*args)


async def until(predicate: Any, within: float = 10.0) -> None:
    """Wait until predicate() is true (polling every 20 ms); fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while not predicate():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_one_leader_and_release_on_stop(maker: StoreMaker) -> None:
    """Of two instances one leads; stopping it releases the lease and the other takes over."""
    a = Leadership(await maker.new(), "a", ttl=5, renew_every=1, retry_every=0.05)
    b = Leadership(await maker.new(), "b", ttl=5, renew_every=1, retry_every=0.05)
    changes: list[tuple[str, int | None]] = []
    b.on_change(lambda role, fence: changes.append((role, fence)))
    await a.start()
    await until(lambda: a.role == "leader")
    await b.start()
    await asyncio.sleep(0.3)
    assert (a.role, b.role) == ("leader", "passive")
    first = a.fence
    assert first is not None
    await a.stop()
    assert a.role == "passive"
    await until(lambda: b.role == "leader", within=3)  # well before a's 5 s ttl: it was released
    assert b.fence == first + 1
    assert changes == [("leader", first + 1)]
    await b.stop()
    assert changes[-1] == ("passive", None)


async def test_dead_leader_is_replaced_after_expiry(maker: StoreMaker) -> None:
    """A leader that stops renewing (its task dies unreleased) is replaced once its lease expires."""
    store_a, store_b = await maker.new(), await maker.new()
    a = Leadership(store_a, "a", ttl=0.6, renew_every=0.2, retry_every=0.05)
    await a.start()
    await until(lambda: a.role == "leader")
    assert a._task is not None
    a._task.cancel()  # the process "dies": no release, no more renewals
    b = Leadership(store_b, "b", ttl=0.6, renew_every=0.2, retry_every=0.05)
    await b.start()
    await until(lambda: b.role == "leader", within=3)
    assert b.fence == 2
    assert await store_b.renew_lease(LEADER_LEASE, "b", 2, 0.6) is True  # the lease is b's, at fence 2
    assert a.role == "passive"  # its own clock says the lease may have passed on
    await b.stop()


async def test_store_errors_make_the_leader_passive_then_it_returns(maker: StoreMaker) -> None:
    """A failing renewal makes the leader passive at once; once the store answers it leads again."""
    flaky = FlakyStore(await maker.new())
    lead = Leadership(flaky, "a", ttl=0.8, renew_every=0.1, retry_every=0.05)  # type: ignore[arg-type]
    roles: list[str] = []

    async def record(role: str, fence: int | None) -> None:
        roles.append(role)

    lead.on_change(record)
    await lead.start()
    await until(lambda: lead.role == "leader")
    flaky.failing = True
    await until(lambda: lead.role == "passive", within=2)
    flaky.failing = False
    await until(lambda: lead.role == "leader", within=3)
    assert roles == ["leader", "passive", "leader"]
    await lead.stop()


async def test_start_never_waits_for_the_store(maker: StoreMaker) -> None:
    """start() returns at once even while the store does not answer; the instance stays passive."""
    flaky = FlakyStore(await maker.new())
    flaky.held.clear()
    lead = Leadership(flaky, "a", ttl=5, renew_every=1)  # type: ignore[arg-type]
    await asyncio.wait_for(lead.start(), 0.5)
    await asyncio.sleep(0.2)
    assert lead.role == "passive"
    assert lead.fence is None
    flaky.held.set()
    await until(lambda: lead.role == "leader")
    await lead.stop()


async def test_hung_renewal_counts_as_lost(maker: StoreMaker) -> None:
    """A renewal that does not answer before the lease would end leaves the instance passive."""
    flaky = FlakyStore(await maker.new())
    lead = Leadership(flaky, "a", ttl=0.5, renew_every=0.1)  # type: ignore[arg-type]
    await lead.start()
    await until(lambda: lead.role == "leader")
    flaky.held.clear()
    await until(lambda: lead.role == "passive", within=2)
    flaky.held.set()
    await lead.stop()


async def test_renew_interval_must_fit_in_the_ttl() -> None:
    """renew_every at or above ttl would let the lease lapse between renewals: refused."""
    with pytest.raises(ValueError, match="renew_every"):
        Leadership(None, "a", ttl=5, renew_every=5)  # type: ignore[arg-type]
