"""Read a request body ourselves, with a cap, so an over-size body still gets our answer.

aiohttp's `request.read()` answers 413 past `client_max_size` (1 MiB); a webhook provider then
retries forever. Here the first `cap` bytes are kept, the rest is drained (hashed, so duplicates
of an over-size body are still recognised) up to `drain_limit`, past which the connection is
closed after the answer. A body that does not arrive within `timeout_s` is cut there (what came
is kept, the connection closed after the answer): a client sending a byte a minute holds no
handler for ever.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import NamedTuple

from aiohttp import ClientPayloadError, web

CHUNK = 64 * 1024


class CappedBody(NamedTuple):
    """A body as read (a NamedTuple: every callback builds one, and a frozen dataclass took three
    times as long to build)."""

    data: bytes  # the first `cap` bytes
    size: int  # bytes read in all
    sha256: str  # of every byte read
    truncated: bool  # more than `cap` bytes came
    complete: bool  # the whole body was read (False: drain limit hit or the client went away)
    timed_out: bool = False  # cut at the timeout


async def read_capped(
    request: web.Request, cap: int, drain_limit: int | None = None, timeout_s: float | None = None
) -> CappedBody:
    limit = drain_limit if drain_limit is not None else cap * 16
    content = request.content
    if content.is_eof():
        # The whole body came with the head (every small callback): no loop, no timer. This was
        # a fifth of a callback's time on the event loop.
        try:
            data = content.read_nowait(-1)
        except (ConnectionError, ClientPayloadError, OSError):
            data = None
        if data is not None and len(data) <= cap:
            return CappedBody(data, len(data), hashlib.sha256(data).hexdigest(), False, True)
        if data is not None:
            return CappedBody(
                data[:cap], len(data), hashlib.sha256(data).hexdigest(), True, len(data) <= limit
            )
    digest = hashlib.sha256()
    kept = bytearray()
    size = 0
    complete = True
    timed_out = False
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                chunk = await request.content.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                digest.update(chunk)
                room = cap - len(kept)
                if room > 0:
                    kept += chunk[:room]
                if size > limit:
                    complete = False
                    break
    except TimeoutError:  # before OSError, of which it is a subclass
        complete, timed_out = False, True
    except (ConnectionError, ClientPayloadError, OSError):
        complete = False
    return CappedBody(bytes(kept), size, digest.hexdigest(), size > cap, complete, timed_out)
