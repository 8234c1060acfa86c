"""Keep the server answerable under slow or abusive clients.

- A request head must arrive within `head_timeout_s` of the connection opening (or of the last
  answer, for a kept-alive connection): aiohttp's keep-alive timer does this when set that short
  (its default is an hour, which let 1,500 half-sent requests stay open).
- A request body must arrive within `body_timeout_s` (body.py).
- Open connections are capped below the descriptor limit (`connection_cap`): past the cap the
  oldest connection that is not in the middle of a request is closed to make room, so a flood of
  half-sent requests cannot lock out /healthz or a callback; if every connection is busy the new
  one is closed instead. Without the cap, 300 half-sent requests under a 256-descriptor limit made
  every accept fail.
- The loop's errors (an accept failing with EMFILE, a transport error) are logged at most once a
  second per kind, with a count of those left out: they were 43 MB of log in 10 s.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("callback_server.connections")

# The listen backlog, which is also how many connections asyncio accepts in one go: a burst holds
# that many descriptors before any connection_made can close one, and up to three bursts can be
# in flight before the evictions' sockets are closed. Linux caps it at net.core.somaxconn (4096).
BACKLOG = 32
# Descriptors kept free of client connections: the listening socket, the store (SQLite's file, WAL
# and shared memory for the writer and each reader; or PostgreSQL's pool), the outbound client's
# pool, logging, and the loop's own self-pipe and epoll descriptors (64); and the accept bursts.
RESERVED_FDS = 64 + 3 * BACKLOG
MIN_CAP = 16
LOG_EVERY_S = 1.0


def descriptor_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(configured: int, limit: int | None = None) -> int:
    """The connection cap: the configured one, kept RESERVED_FDS below the descriptor limit."""
    limit = descriptor_limit() if limit is None else limit
    return max(MIN_CAP, min(configured, limit - RESERVED_FDS))


def _busy(handler: Any) -> bool:
    # aiohttp's RequestHandler sets this while a request is being handled (aiohttp 3.14).
    return bool(getattr(handler, "_request_in_progress", False))


def _open(handler: Any) -> bool:
    # A closed handler stays in the server's list until its task ends; its transport is gone.
    return handler.transport is not None


def guard_connections(server: web.Server, cap: int) -> None:
    """Hold `server` (a runner's web.Server) to `cap` open connections, evicting idle ones first."""
    accept = server.connection_made
    evicted = 0
    last_log = 0.0

    def connection_made(handler: Any, transport: asyncio.Transport) -> None:
        nonlocal evicted, last_log
        accept(handler, transport)
        if len(server.connections) <= cap:
            return
        open_now = [h for h in server.connections if _open(h)]  # oldest first (insertion order)
        if len(open_now) <= cap:
            return
        victim = next((h for h in open_now if h is not handler and not _busy(h)), handler)
        victim.force_close()
        evicted += 1
        now = time.monotonic()
        if now - last_log >= LOG_EVERY_S:
            log.warning("connection cap %d reached: %d connections closed to make room", cap, evicted)
            last_log, evicted = now, 0

    server.connection_made = connection_made  # type: ignore[method-assign]


class OncePerInterval(logging.Filter):
    """Lets a logger's records through at most once per `every_s` per message template: aiohttp
    logs every malformed request with its traceback ("Error handling request"), which a flood of
    them turns into megabytes of log."""

    def __init__(self, every_s: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = self.clock()
        kind = str(record.msg)
        if now - self._last.get(kind, -1e9) < self.every_s:
            return False
        self._last[kind] = now
        return True


class RateLimitedErrors:
    """An event loop exception handler logging each kind of error at most once per `every_s`."""

    def __init__(self, every_s: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        kind = f"{context.get('message', '')}|{type(exc).__name__ if exc else ''}"
        now = self.clock()
        if now - self._last.get(kind, -1e9) < self.every_s:
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return
        self._last[kind] = now
        left_out = self._left_out.pop(kind, 0)
        message = context.get("message", "event loop error")
        if left_out:
            message = f"{message} ({left_out} more like it in the last {self.every_s:g} s not logged)"
        log.error("%s: %s", message, exc or "", exc_info=None)
