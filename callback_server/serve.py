"""Run the server: bind the port first, then open the store and join the election in the background.

aiohttp runs startup hooks before `TCPSite.start()`, so nothing slow happens there; the store is
opened and the lease sought only after the socket listens. SIGTERM/SIGINT stop it gracefully:
the site stops accepting, in-flight requests finish (up to SHUTDOWN_TIMEOUT_S), the lease is
released and the store closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from callback_server.app import create_app, start_background
from callback_server.connections import (
    BACKLOG,
    OncePerInterval,
    RateLimitedErrors,
    connection_cap,
    guard_connections,
)
from callback_server.settings import ServerSettings
from callback_server.store import open_store
from orfeas_contract.redact import install_redaction

SHUTDOWN_TIMEOUT_S = 10.0
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `extra` (job_id...)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        if record.exc_text:  # set (and redacted) by orfeas_contract.redact.RedactingFilter
            data["exc"] = record.exc_text
        elif record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    install_redaction(root)  # tokens and presigned query strings never reach a log line
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(OncePerInterval())


async def serve(settings: ServerSettings, stop: asyncio.Event | None = None) -> None:
    started = time.perf_counter()
    stop = stop or asyncio.Event()
    store = open_store(settings.database_url, max_body_bytes=settings.max_body_bytes)
    app = create_app(settings, store)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(RateLimitedErrors())
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    assert runner.server is not None
    cap = connection_cap(settings.max_connections)
    guard_connections(runner.server, cap)
    site = web.TCPSite(runner, settings.host, settings.port, backlog=BACKLOG)
    await site.start()
    ports = [addr[1] for addr in runner.addresses if isinstance(addr, tuple)]
    logging.getLogger("callback_server").info(
        "listening on %s:%s",
        settings.host,
        ports[0] if ports else settings.port,
        extra={"startup_s": round(time.perf_counter() - started, 4), "max_connections": cap},
    )
    start_background(app)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop's runner when it is installed, else asyncio's. Under wrk (bench/callbacks.py, 32
    connections) uvloop took 25-60 µs of CPU off each callback's ~550 (measured per request from
    the process's CPU time, which other load on the machine does not skew)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def main() -> int:
    try:
        settings = ServerSettings.from_env()
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    event_loop_runner()(serve(settings))
    return 0
