"""Leader election on the store's lease row: one leader runs the reconciler, the others stay passive.

`Leadership.start()` only schedules a background task and returns at once, so the app's startup
never waits on the store. The task tries to take the lease while passive (every `retry_every`
seconds) and renews it while leader (every `renew_every` seconds). A renewal that fails, raises,
or does not answer before the lease would run out makes the instance passive at once: a leader
that cannot prove its lease stops acting as one before another instance can take over. Fences
come from the store and grow with every grant, so a stale leader's writes are refused there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from callback_server.store.base import LEADER_LEASE
from callback_server.store.store import Store

log = logging.getLogger(__name__)

Role = Literal["leader", "passive"]
ChangeCallback = Callable[[Role, int | None], Awaitable[None] | None]


class Leadership:
    """Holds (or waits for) the `name` lease for `holder`; `role` and `fence` say where it stands."""

    def __init__(
        self,
        store: Store,
        holder: str,
        ttl: float = 15,
        renew_every: float = 5,
        *,
        retry_every: float | None = None,
        name: str = LEADER_LEASE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < renew_every < ttl:
            raise ValueError(f"renew_every ({renew_every}) must be positive and below ttl ({ttl})")
        self.store = store
        self.holder = holder
        self.ttl = ttl
        self.renew_every = renew_every
        # A passive instance looks for a free lease at least once a second, so a dead leader's
        # lease is taken over within about ttl + 1 s.
        self.retry_every = retry_every if retry_every is not None else min(renew_every, 1.0)
        self.name = name
        self._clock = clock
        self._role: Role = "passive"
        self._fence: int | None = None
        self._valid_until = 0.0  # our clock: past it, an unrenewed lease may be someone else's
        self._callbacks: list[ChangeCallback] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def role(self) -> Role:
        if self._role == "leader" and self._clock() >= self._valid_until:
            return "passive"  # the renewal is overdue: never claim a lease that may have passed on
        return self._role

    @property
    def fence(self) -> int | None:
        """The fence of the lease while leader, else None."""
        return self._fence if self.role == "leader" else None

    def on_change(self, callback: ChangeCallback) -> None:
        """Call `callback(role, fence)` on every change of role (a coroutine function is awaited)."""
        self._callbacks.append(callback)

    async def start(self) -> None:
        """Start the background task and return at once (safe inside aiohttp startup hooks)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"leadership:{self.name}")

    async def stop(self) -> None:
        """Stop the task; a leader releases its lease so another instance takes over at once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._role == "leader" and self._fence is not None:
            fence = self._fence
            await self._set("passive", None)
            try:
                await self.store.release_lease(self.name, self.holder, fence)
            except Exception:
                log.warning("could not release the %s lease (it expires by itself)", self.name, exc_info=True)

    async def _run(self) -> None:
        while True:
            if self._role == "leader":
                await self._renew()
            else:
                await self._acquire()
            await asyncio.sleep(self.renew_every if self._role == "leader" else self.retry_every)

    async def _acquire(self) -> None:
        started = self._clock()
        try:
            fence = await asyncio.wait_for(
                self.store.acquire_lease(self.name, self.holder, self.ttl), self.renew_every
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("taking the %s lease failed", self.name, exc_info=True)
            return
        if fence is not None:
            # Count the lease from before the call: the store's clock started it no earlier.
            self._valid_until = started + self.ttl
            await self._set("leader", fence)

    async def _renew(self) -> None:
        started = self._clock()
        fence = self._fence
        assert fence is not None
        ok = False
        try:
            ok = await asyncio.wait_for(
                self.store.renew_lease(self.name, self.holder, fence, self.ttl),
                max(0.0, self._valid_until - started),
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("renewing the %s lease failed: now passive", self.name, exc_info=True)
        if ok:
            self._valid_until = started + self.ttl
        else:
            await self._set("passive", None)

    async def _set(self, role: Role, fence: int | None) -> None:
        if role == self._role and fence == self._fence:
            return
        self._role, self._fence = role, fence
        if role == "passive":
            self._valid_until = 0.0
        log.info("leadership of %s: %s (fence %s)", self.name, role, fence)
        for callback in list(self._callbacks):
            try:
                result = callback(role, fence)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("a leadership change callback failed")
