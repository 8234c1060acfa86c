"""The aiohttp application: routes, shared runtime, background start and graceful stop.

`create_app` does no I/O. `start_background(app)` is called once the port is bound (serve.py; the
test fixtures do the same): it opens the store, replays unapplied callbacks and starts the
leader election, all in background tasks. Shutdown (on_cleanup) stops the election (releasing
the lease), cancels and awaits every background task, then closes the session and the store.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from callback_server.api_keys import require_api_key
from callback_server.deliveries import deliver_forever
from callback_server.ingest import replay_unapplied
from callback_server.leader import Leadership
from callback_server.metrics import Metrics
from callback_server.reconciler import reconcile_forever
from callback_server.routes_callbacks import add_callback_routes
from callback_server.routes_jobs import add_job_routes, store_errors
from callback_server.routes_ops import add_ops_routes
from callback_server.routes_page import add_page_routes
from callback_server.runtime import RUNTIME, Runtime, log
from callback_server.settings import API_KEYS, ServerSettings
from callback_server.store.store import Store

LeadershipFactory = Callable[[Store, str, ServerSettings], Any]
LEADERSHIP = web.AppKey("leadership", Leadership)
STORE_RETRY_S = 1.0
LEADERSHIP_STOP_S = 3.0


def default_leadership(store: Store, holder: str, settings: ServerSettings) -> Leadership:
    # Renew three times per lease: two renewals may fail before another instance can take over.
    return Leadership(store, holder, ttl=settings.lease_s, renew_every=settings.lease_s / 3)


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaderWork:
    """Starts the reconciler and the outbox delivery when leader; stops them when not."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.tasks: list[asyncio.Task[Any]] = []

    async def on_change(self, role: str, fence: int | None) -> None:
        self.runtime.set_role(role, fence)
        await self.stop()
        if role == "leader" and fence is not None:
            rt = self.runtime
            self.tasks = [
                rt.spawn(reconcile_forever(rt, fence), f"reconciler:{fence}"),
                rt.spawn(deliver_forever(rt, fence), f"deliveries:{fence}"),
            ]

    async def stop(self) -> None:
        tasks, self.tasks = self.tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


LEADER_WORK = web.AppKey("leader_work", LeaderWork)


def create_app(
    settings: ServerSettings,
    store: Store,
    *,
    leadership_factory: LeadershipFactory = default_leadership,
    clock: Callable[[], float] = time.time,
    holder: str | None = None,
) -> web.Application:
    # aiohttp inflates gzip/deflate/br bodies on the event loop with no bound on the size, and a
    # body it cannot decode fails the request: callbacks are decoded by decoding.py instead.
    # keepalive_timeout: aiohttp's keep-alive timer also runs from the connection's start, so it
    # is the time a client has to send a complete request head (connections.py).
    handler_args = {"auto_decompress": False, "keepalive_timeout": settings.head_timeout_s}
    app = web.Application(middlewares=[require_api_key, store_errors], handler_args=handler_args)
    runtime = Runtime(settings=settings, store=store, metrics=Metrics(), clock=clock)
    app[RUNTIME] = runtime
    app[LEADERSHIP] = leadership_factory(store, holder or holder_name(), settings)
    app[LEADER_WORK] = LeaderWork(runtime)
    app[LEADERSHIP].on_change(app[LEADER_WORK].on_change)

    add_ops_routes(app)
    add_callback_routes(app)
    add_job_routes(app)
    add_page_routes(app, settings.model_origins)  # the status page: GET / and its files under /static/

    app.on_startup.append(_open_session)
    app.on_shutdown.append(_begin_stopping)
    app.on_cleanup.append(_shutdown)
    return app


async def _open_session(app: web.Application) -> None:
    app[RUNTIME].open_session()  # no I/O: the port is not held up


async def _begin_stopping(app: web.Application) -> None:
    # on_shutdown runs after the port stops accepting and before aiohttp waits for in-flight
    # requests: long-polls and event streams end now instead of holding shutdown for their wait.
    app[RUNTIME].stopping.set()


async def _open_store(app: web.Application) -> None:
    runtime = app[RUNTIME]
    while True:
        try:
            await runtime.store.open()
            break
        except Exception as exc:
            runtime.store_error = str(exc)
            log.error("opening the store failed (retrying in %s s): %s", STORE_RETRY_S, exc)
            await asyncio.sleep(STORE_RETRY_S)
    runtime.store_error = None
    runtime.store_ready.set()
    runtime.metrics.set("orfeas_store_ready", 1)
    log.info("store open")
    try:
        replayed = await replay_unapplied(runtime)
        if replayed:
            log.info("replayed %d unapplied callbacks", replayed)
    except Exception:
        log.exception("replaying unapplied callbacks failed")
    await app[LEADERSHIP].start()


def start_background(app: web.Application) -> None:
    """Open the store and start the election in the background (call once the port is bound)."""
    runtime = app[RUNTIME]
    if not runtime.settings.auth_required:
        log.warning("neither CALLBACK_TOKEN nor ORFEAS_WEBHOOK_SECRET is set: every callback is trusted")
    if not runtime.settings.api_keys:
        log.warning(
            "%s is not set: the job API (/v1/*) answers 401 to every request; set %s=label:key,... "
            "(keys of 16+ characters, e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')",
            API_KEYS,
            API_KEYS,
        )
    else:
        log.info(
            "job API open to %d key(s): %s",
            len(runtime.settings.api_keys),
            ", ".join(k.label for k in runtime.settings.api_keys),
        )
    runtime.spawn(_open_store(app), "open-store")


async def _shutdown(app: web.Application) -> None:
    runtime = app[RUNTIME]
    await app[LEADER_WORK].stop()
    if runtime.store_ready.is_set():
        # Releases the lease so a passive instance takes over at once. Bounded: on Python 3.11
        # asyncio.wait_for can swallow a cancellation that races a result, and the election's
        # task then never ends; shutdown must not hang on it (the lease then simply expires).
        stopping = asyncio.ensure_future(app[LEADERSHIP].stop())
        done, _ = await asyncio.wait({stopping}, timeout=LEADERSHIP_STOP_S)
        if not done:
            log.error("the leader election did not stop in %s s; the lease will expire", LEADERSHIP_STOP_S)
            stopping.cancel()
        elif stopping.exception() is not None:
            log.error("stopping the leader election failed", exc_info=stopping.exception())
    await runtime.cancel_tasks()
    if runtime.session is not None:
        await runtime.session.close()
    if runtime.webhooks is not None:
        runtime.webhooks.close()
    if runtime.store_ready.is_set():
        await runtime.store.close()
