"""Is a callback authentic, and for which job? Per-job credentials derived from a master secret.

The master key is ORFEAS_WEBHOOK_SECRET's decoded key when that is set, else CALLBACK_TOKEN's
UTF-8 bytes. Neither ever leaves the server. Each submission gets a random reference `ref`
(stored with the job) and two values derived from it:

    token  = base64url(HMAC-SHA256(master, "orfeas.callback-token." + ref))   # RunPod's webhook URL
    secret = "whsec_" + base64(HMAC-SHA256(master, "orfeas.webhook-secret." + ref))  # the worker's

RunPod's webhook goes to `/callbacks/runpod?ref=…&token=…`; the worker signs its events
(Standard Webhooks) with `secret` and posts them to `/callbacks/orfeas?ref=…`. Whoever reads one
job's input can forge callbacks for that job alone: a callback that names `ref` is applied only
to the job stored with that ref (`StatusEvent.callback_ref`, checked by `plan_event` inside the
store's transaction), so a token for job A does not move job B.

The master credentials themselves (the operator's: `?token=CALLBACK_TOKEN`, or a signature under
ORFEAS_WEBHOOK_SECRET) still authenticate a callback for any job that has no ref in its query.
With neither configured every callback is accepted (a development setup; the server logs it).
Tokens are taken out of the headers and query string before they are stored (`redact_token`),
and a stored callback keeps the verdict given on arrival instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode

from callback_server.settings import ServerSettings
from orfeas_contract import webhook_signing

TOKEN_HEADER = "X-Callback-Token"
TOKEN_PARAM = "token"
REF_PARAM = "ref"
REDACTED = "[redacted]"
_REF_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_TOKEN_LABEL = b"orfeas.callback-token."
_SECRET_LABEL = b"orfeas.webhook-secret."

# Why a callback was refused, besides the signature's own reasons (webhook_signing).
NO_CREDENTIALS = "no token or signature"
BAD_TOKEN = "bad token"


class Verdict(NamedTuple):
    """`accepted`; `ref`: the job reference the callback is bound to (None: any job);
    `reason`: why it was refused (for the log)."""

    accepted: bool
    ref: str | None = None
    reason: str | None = None


def master_key(settings: ServerSettings) -> bytes | None:
    if settings.webhook_secret:
        return webhook_signing.secret_key(settings.webhook_secret)
    if settings.callback_token:
        return settings.callback_token.encode("utf-8")
    return None


def new_ref() -> str:
    """A fresh job reference: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


def _derive(master: bytes, label: bytes, ref: str) -> bytes:
    return hmac.new(master, label + ref.encode("ascii"), hashlib.sha256).digest()


def job_token(master: bytes, ref: str) -> str:
    return base64.urlsafe_b64encode(_derive(master, _TOKEN_LABEL, ref)).decode("ascii").rstrip("=")


def job_secret(master: bytes, ref: str) -> str:
    return webhook_signing.new_secret(_derive(master, _SECRET_LABEL, ref))


def _matches(expected: str, offered: str | None) -> bool:
    if offered is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), offered.encode("utf-8", "surrogateescape"))


def _query_pairs(query: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(query, keep_blank_values=True, max_num_fields=100)
    except ValueError:
        return []


def query_value(query: str, name: str) -> str | None:
    if not query:  # most callbacks have none, and parse_qsl("") costs more than this test
        return None
    for key, value in _query_pairs(query):
        if key == name:
            return value
    return None


def query_token(query: str) -> str | None:
    return query_value(query, TOKEN_PARAM)


def query_ref(query: str) -> str | None:
    """The job reference a callback names, when it is well formed."""
    ref = query_value(query, REF_PARAM)
    return ref if ref is not None and _REF_RE.match(ref) else None


def authenticate(settings: ServerSettings, headers: Mapping[str, str], query: str, body: bytes) -> Verdict:
    """Whether the callback may change a job, and which one (see the module docstring). Never raises."""
    ref = query_ref(query)
    if not settings.auth_required:
        return Verdict(True, ref)
    lowered = {k.lower(): v for k, v in headers.items()}
    offered = lowered.get(TOKEN_HEADER.lower()) or query_token(query)
    master = master_key(settings)
    if settings.callback_token and _matches(settings.callback_token, offered):
        return Verdict(True, ref)
    reason = BAD_TOKEN if offered is not None else NO_CREDENTIALS
    signed = "webhook-signature" in lowered or "webhook-id" in lowered
    if settings.webhook_secret and signed:
        found = webhook_signing.rejection(settings.webhook_secret, headers, body)
        if found is None:
            return Verdict(True, ref)
        reason = found
    if master is not None and ref is not None:
        if _matches(job_token(master, ref), offered):
            return Verdict(True, ref)
        if signed:
            found = webhook_signing.rejection(job_secret(master, ref), headers, body)
            if found is None:
                return Verdict(True, ref)
            reason = found
    return Verdict(False, ref, reason)


def is_authentic(settings: ServerSettings, headers: Mapping[str, str], query: str, body: bytes) -> bool:
    """True when the callback may change some job. Never raises."""
    return authenticate(settings, headers, query, body).accepted


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
