"""POST /callbacks/{provider} and POST /callbacks: 200 for every body, after a durable write.

The body is read here with a cap (never `request.read()`, which answers 413 past aiohttp's
client_max_size); the only non-200 answer is 503 when the store cannot take the write, so the
provider retries instead of losing the callback.
"""

from __future__ import annotations

import json
import logging
import re

from aiohttp import web

from callback_server.body import read_capped
from callback_server.ingest import arrival, ingest
from callback_server.runtime import RUNTIME, StoreNotReady, json_error
from orfeas_contract.errors import StorageError

log = logging.getLogger("callback_server.callbacks")

_PROVIDER_RE = re.compile(r"^[a-z0-9_-]{1,32}$")
_JSON = "application/json"
_RECEIVED = b'{"received": true}'


def _answer(job_id: str | None) -> bytes:
    """`{"received": true}`, with the job id when one was matched (built by hand: every callback
    gets one, and json_response's general path cost more than the rest of the answer)."""
    if not job_id:
        return _RECEIVED
    return b'{"received": true, "job_id": ' + json.dumps(job_id).encode() + b"}"


def provider_name(raw: str | None) -> str:
    name = (raw or "generic").lower()
    return name if _PROVIDER_RE.match(name) else "generic"


async def receive_callback(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    provider = provider_name(request.match_info.get("provider"))
    body = await read_capped(
        request, runtime.settings.max_body_bytes, timeout_s=runtime.settings.body_timeout_s
    )
    # The query string as sent, percent-escapes kept: a decoded `%00` is a NUL that a TEXT column
    # refuses.
    came = arrival(provider, dict(request.headers), body, request.rel_url.raw_query_string)
    try:
        decision = await ingest(runtime, came)
    except (StoreNotReady, StorageError, OSError) as exc:
        log.error("callback not stored: %s", exc)
        return json_error(503, "store_unavailable", "the callback could not be stored; retry later")
    response = web.Response(body=_answer(decision.job_id if decision.accepted else None), content_type=_JSON)
    if not body.complete:
        response.force_close()
    return response


def add_callback_routes(app: web.Application) -> None:
    app.router.add_post("/callbacks", receive_callback)
    app.router.add_post("/callbacks/{provider}", receive_callback)
