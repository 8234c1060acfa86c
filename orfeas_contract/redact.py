"""Take secrets out of log lines: tokens, signatures and credentials in query strings and headers.

Presigned S3 URLs carry `X-Amz-Signature`/`X-Amz-Credential` (and `X-Amz-Security-Token` with
temporary credentials) in their query; our callback URLs carried `?token=`; botocore's DEBUG
output prints the request's `Authorization: AWS4-HMAC-SHA256 Credential=…, Signature=…`; aiohttp's
parser error for a malformed request line quotes the line, query string included. A
`RedactingFilter` on each root handler rewrites every record that reaches it, whichever library
logged it: the message, the formatted traceback, the stack and any string `extra` field.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

# name=value in a query string (or any text): the value ends at a separator, quote or backslash
# (the last so that a bytes repr such as b'...token=abc\x00' loses only the secret).
_QUERY_NAMES = (
    "token",
    "access_token",
    "callback_token",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
    "signature",
    "credential",
    "awsaccesskeyid",
    "sig",
    "secret",
    "api_key",
)
_QUERY = re.compile(
    r"(?i)(?<![A-Za-z0-9_-])(" + "|".join(re.escape(n) for n in _QUERY_NAMES) + r")(=|%3D)([^&\s'\"<>,;\\)]+)"
)
# Header: value, as raw text or in a dict's repr ('Authorization': b'...').
_HEADER_NAMES = ("authorization", "x-callback-token", "x-amz-security-token", "webhook-signature", "cookie")
_HEADER = re.compile(
    r"(?i)(['\"]?(?:"
    + "|".join(re.escape(n) for n in _HEADER_NAMES)
    + r")['\"]?\s*[:=]\s*(?-i:b)?['\"]?)([^'\"\r\n}]+)"
)
# botocore's signer logs "Signature:\n<hex>" at DEBUG: for a presigned URL that is its credential.
_HEX_SIGNATURE = re.compile(r"(?i)(signature:\s*)[0-9a-f]{32,}")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
_WHSEC = re.compile(r"whsec_[A-Za-z0-9+/=]+")


def redact(text: str) -> str:
    """`text` with every secret-looking value replaced by REDACTED."""
    if not text:
        return text
    text = _HEADER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _QUERY.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    text = _HEX_SIGNATURE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _WHSEC.sub("whsec_" + REDACTED, text)


_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_TRACEBACKS = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Rewrites each record in place; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the formatter's own error path
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


def install_redaction(logger: logging.Logger | None = None) -> None:
    """Put a RedactingFilter on every handler of `logger` (the root logger by default), once."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def configure_logging(level: str = "INFO") -> None:
    """The worker's logging: one stderr handler on the root logger, with redaction installed."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    install_redaction()
