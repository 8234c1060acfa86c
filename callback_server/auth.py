"""Is a callback authentic? A shared token (`?token=` or `X-Callback-Token`) compared in constant
time, or a Standard Webhooks signature under ORFEAS_WEBHOOK_SECRET verified on the raw bytes.

With neither configured every callback is accepted (a development setup; the server logs it).
The token is a bearer secret: it is taken out of the headers and query string before they are
stored (`redact_token`), and a stored callback keeps the verdict given on arrival instead.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

from callback_server.settings import ServerSettings
from orfeas import webhook_signing

TOKEN_HEADER = "X-Callback-Token"
TOKEN_PARAM = "token"
REDACTED = "[redacted]"


def _token_matches(expected: str, offered: str | None) -> bool:
    if offered is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), offered.encode("utf-8", "surrogateescape"))


def query_token(query: str) -> str | None:
    try:
        for key, value in parse_qsl(query, keep_blank_values=True, max_num_fields=100):
            if key == TOKEN_PARAM:
                return value
    except ValueError:
        return None
    return None


def is_authentic(settings: ServerSettings, headers: Mapping[str, str], query: str, body: bytes) -> bool:
    """True when the callback may change a job. Never raises."""
    if not settings.auth_required:
        return True
    if settings.callback_token:
        lowered = {k.lower(): v for k, v in headers.items()}
        if _token_matches(settings.callback_token, lowered.get(TOKEN_HEADER.lower())):
            return True
        if _token_matches(settings.callback_token, query_token(query)):
            return True
    if settings.webhook_secret:
        try:
            return webhook_signing.verify(settings.webhook_secret, headers, body)
        except (ValueError, TypeError):  # a malformed secret is a config error, logged at start
            return False
    return False


def redact_token(headers: dict[str, str], query: str) -> tuple[dict[str, str], str]:
    """The headers and query string to store: any callback token's value replaced by REDACTED,
    everything else as received (the query string byte for byte when it holds no token)."""
    header = TOKEN_HEADER.lower()
    if any(k.lower() == header for k in headers):
        headers = {k: (REDACTED if k.lower() == header else v) for k, v in headers.items()}
    if TOKEN_PARAM in query:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=100)
        except ValueError:
            pairs = None
        if pairs is None:
            query = REDACTED  # unparseable and naming a token: keep none of it
        elif any(k == TOKEN_PARAM for k, _ in pairs):
            query = urlencode([(k, REDACTED if k == TOKEN_PARAM else v) for k, v in pairs])
    return headers, query
