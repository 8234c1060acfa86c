"""Who may use the job API: `Authorization: Bearer <key>` on every /v1/* route, and JSON bodies only.

Deny by default: with API_KEYS unset the job API answers 401 `api_key_required` to everyone.
Keys are compared in constant time against every configured key (the loop never stops early, so
the answer's timing says nothing about which key came close). A POST to /v1/* that carries a body
must say `Content-Type: application/json` (else 415): a plain HTML form can only send
text/plain, urlencoded or multipart bodies, so no web page can submit jobs from a visitor's
browser even if a key ever leaked into one. Callbacks, the status page's shell, /healthz,
/readyz, /metrics and /openapi.json need no key.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from callback_server.runtime import RUNTIME, json_error
from callback_server.settings import API_KEYS, ApiKey

PROTECTED_PREFIX = "/v1/"
#: The request's key label (for logs), set once the key is accepted.
CLIENT = web.RequestKey("orfeas_client", str)
_JSON_TYPES = frozenset({"application/json"})


def match_key(keys: tuple[ApiKey, ...], offered: str) -> ApiKey | None:
    """The configured key equal to `offered`, compared in constant time against each one."""
    raw = offered.encode("utf-8", "surrogateescape")
    found = None
    for key in keys:
        if hmac.compare_digest(key.key.encode("utf-8"), raw):
            found = key
    return found


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _unauthorized(code: str, message: str) -> web.Response:
    response = json_error(401, code, message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="orfeas"'
    return response


def _has_body(request: web.Request) -> bool:
    return bool(request.content_length) or (
        request.content_length is None and request.headers.get("Transfer-Encoding", "").lower() == "chunked"
    )


def _protected(request: web.Request) -> bool:
    """A job API request: by its path, or by the route it matched (whatever the path's spelling)."""
    if request.path.startswith(PROTECTED_PREFIX):
        return True
    route = request.match_info.route
    canonical = route.resource.canonical if route.resource is not None else ""
    return canonical.startswith(PROTECTED_PREFIX)


@web.middleware
async def require_api_key(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _protected(request):
        return await handler(request)
    keys = request.app[RUNTIME].settings.api_keys
    if not keys:
        return _unauthorized(
            "api_key_required", f"the job API is closed: the server has no {API_KEYS} configured"
        )
    offered = bearer_token(request.headers.get("Authorization"))
    if offered is None:
        return _unauthorized("api_key_required", "send an API key as 'Authorization: Bearer <key>'")
    key = match_key(keys, offered)
    if key is None:
        return _unauthorized("api_key_invalid", "the API key is not valid")
    if request.method == "POST" and _has_body(request) and request.content_type not in _JSON_TYPES:
        return json_error(
            415,
            "unsupported_media_type",
            f"the body must be application/json, not {request.content_type or 'untyped'}",
        )
    request[CLIENT] = key.label
    return await handler(request)


def client_label(request: web.Request) -> str | None:
    """The label of the key the request came with (None outside the job API)."""
    return request.get(CLIENT)
