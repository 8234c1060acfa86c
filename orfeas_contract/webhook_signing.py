"""Standard Webhooks signatures (https://www.standardwebhooks.com/), stdlib only.

Headers: `webhook-id` (stable across retries of one message), `webhook-timestamp` (unix
seconds) and `webhook-signature` = space-separated `v1,<base64 HMAC-SHA256>` over
`"{id}.{timestamp}.{body}"`. Used by the worker to sign its callbacks and by the callback server
to verify them and to sign the webhooks it delivers to clients.

The HMAC key is the secret decoded exactly as the reference library (`standardwebhooks` 1.1)
does: the `whsec_` prefix dropped when present, the rest base64-decoded (padding added, characters
outside the alphabet skipped). A secret without the prefix is base64 too, never raw text: a
receiver using the reference library would derive another key and refuse every message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

from orfeas_contract.errors import ConfigError

# The environment variables both deployables read for webhooks (each in its own settings object).
WEBHOOK_SECRET = "ORFEAS_WEBHOOK_SECRET"
ALLOW_PRIVATE_WEBHOOKS = "ORFEAS_ALLOW_PRIVATE_WEBHOOKS"

# Standard Webhooks recommends refusing timestamps more than 5 minutes off (replay window).
DEFAULT_TOLERANCE_S = 300
PREFIX = "whsec_"
# Standard Webhooks secrets are 24 to 64 bytes of key; a shorter key is refused at start.
MIN_KEY_BYTES = 24

# Why a signature was refused (logged by the receiver; never sent back to the caller).
MISSING_HEADER = "missing header"
MALFORMED_TIMESTAMP = "malformed timestamp"
STALE_TIMESTAMP = "stale timestamp"
BAD_SIGNATURE = "bad signature"


def secret_key(secret: str) -> bytes:
    """The HMAC key of `secret`, as the reference library decodes it; ValueError if it cannot."""
    text = secret.removeprefix(PREFIX)
    try:
        # The reference appends "==" (b64decode ignores surplus padding) and does not validate.
        return base64.b64decode(text + "==")
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64 after the {PREFIX} prefix: {exc}") from None


def check_secret(secret: object) -> str:
    """The secret if it can sign; else ValueError saying why (not base64, or a key under 24 bytes)."""
    if not isinstance(secret, str) or not secret:
        raise ValueError("must be a non-empty string")
    key = secret_key(secret)
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"the key is {len(key)} bytes; use at least {MIN_KEY_BYTES} "
            f"(whsec_ followed by the base64 of {MIN_KEY_BYTES} to 64 random bytes)"
        )
    return secret


def check_webhook_secret(secret: str | None) -> None:
    """ORFEAS_WEBHOOK_SECRET, checked when settings are built (the worker's and the callback
    server's): one that cannot sign would otherwise fail, or sign with a key no receiver holds,
    on every job and every callback."""
    if secret is None:
        return
    try:
        check_secret(secret)
    except ValueError as exc:
        raise ConfigError(str(exc), field=WEBHOOK_SECRET) from None


def new_secret(key: bytes) -> str:
    """The `whsec_` form of a raw key."""
    return PREFIX + base64.b64encode(key).decode("ascii")


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


def rejection(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> str | None:
    """None when the raw body carries a valid, fresh signature under `secret`; else why not
    (MISSING_HEADER, MALFORMED_TIMESTAMP, STALE_TIMESTAMP, BAD_SIGNATURE). Never raises."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    ts_raw = lowered.get("webhook-timestamp")
    sigs = lowered.get("webhook-signature")
    if not msg_id or not ts_raw or not sigs:
        return MISSING_HEADER
    try:
        ts = int(ts_raw)
    except ValueError:
        return MALFORMED_TIMESTAMP
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return STALE_TIMESTAMP
    try:
        expected = sign(secret, msg_id, ts, body)
    except (ValueError, TypeError):
        return BAD_SIGNATURE
    if any(hmac.compare_digest(candidate, expected) for candidate in sigs.split()):
        return None
    return BAD_SIGNATURE
