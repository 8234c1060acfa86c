"""Operations: liveness, readiness (role and store), Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

import asyncio

from aiohttp import web

from callback_server.metrics import CONTENT_TYPE
from callback_server.openapi import openapi_document
from callback_server.runtime import RUNTIME

PING_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answers. Touches nothing else."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    store = "opening"
    if runtime.store_ready.is_set():
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                ok = await runtime.store.ping()
        except Exception:
            ok = False
        store = "ok" if ok else "error"
    body = {"role": runtime.role, "store": store}
    return web.json_response(body, status=200 if store == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    text = request.app[RUNTIME].metrics.render()
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def add_ops_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
