"""Standard Webhooks signatures (https://www.standardwebhooks.com/), stdlib only.

Headers: `webhook-id` (stable across retries of one message), `webhook-timestamp` (unix
seconds) and `webhook-signature` = space-separated `v1,<base64 HMAC-SHA256>` over
`"{id}.{timestamp}.{body}"`, keyed with the base64-decoded part of a `whsec_...` secret.
Used by the worker to sign its callbacks and by the callback server to verify them and to sign
the webhooks it delivers to clients.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

# Standard Webhooks recommends refusing timestamps more than 5 minutes off (replay window).
DEFAULT_TOLERANCE_S = 300


# Standard Webhooks secrets are 24 to 64 bytes; under 16 a key is too short to trust.
MIN_KEY_BYTES = 16


def check_secret(secret: object) -> str:
    """The secret if it can sign; else ValueError saying why (a `whsec_` secret must be base64 after
    the prefix: anything else would decode to a key no receiver holds)."""
    if not isinstance(secret, str) or not secret:
        raise ValueError("must be a non-empty string")
    if secret.startswith("whsec_"):
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            raise ValueError("whsec_ secrets must be base64 after the prefix") from None
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"use a key of at least {MIN_KEY_BYTES} bytes")
    return secret


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: base64 after `whsec_`; a secret without the prefix is used as text."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_headers(secret: str, msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when the raw body carries a valid, fresh signature under `secret`. Never raises."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    ts_raw = lowered.get("webhook-timestamp")
    sigs = lowered.get("webhook-signature")
    if not msg_id or not ts_raw or not sigs:
        return False
    try:
        ts = int(ts_raw)
        expected = sign(secret, msg_id, ts, body)
    except (ValueError, TypeError):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    return any(hmac.compare_digest(candidate, expected) for candidate in sigs.split())
