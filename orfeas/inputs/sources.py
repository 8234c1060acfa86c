"""The request's `image` string → the picture's bytes.

Accepted: raw base64 (standard or URL-safe alphabet, padding optional, line breaks allowed), a
data URI (`data:image/png;base64,...`), an https URL (fetched by orfeas.inputs.fetch), and
`s3://bucket/key` (read through the store's `object_reader`). Anything else (http, ftp, file, ...)
is refused. Every source is held to `settings.max_image_bytes`; base64 is measured before it is
decoded, so an oversized string is refused without a second copy in memory.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

from orfeas.errors import InvalidInput, OrfeasError, StorageError
from orfeas.settings import Settings

FIELD = "image"
ObjectReader = Callable[[str, str], bytes]  # (bucket, key) -> bytes
Fetcher = Callable[[str], bytes]  # https URL -> bytes

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_WHITESPACE = re.compile(rb"\s+")
_BASE64_CHARS = re.compile(rb"^[A-Za-z0-9+/\-_]*={0,2}$")
# S3 bucket names: 3-63 of lower-case letters, digits, dots and hyphens.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


def read_image_source(
    source: str,
    *,
    settings: Settings,
    object_reader: ObjectReader | None,
    fetcher: Fetcher | None = None,
) -> bytes:
    """The bytes `source` names; InvalidInput(field="image") when it cannot be used.

    `fetcher` replaces the https fetch (tests); by default orfeas.inputs.fetch.fetch_https runs
    with the settings' size cap and timeout.
    """
    if not isinstance(source, str):
        raise InvalidInput("give the picture as a string", field=FIELD)
    text = source.strip()
    if not text:
        raise InvalidInput("the picture is empty", field=FIELD)
    limit = settings.max_image_bytes
    if text[:5].lower() == "data:":
        return _decode_data_uri(text, limit)
    match = _SCHEME.match(text)
    if match is None:
        return decode_base64(text, limit)
    scheme = match.group(1).lower()
    if scheme == "https":
        if fetcher is not None:
            data = fetcher(text)
        else:
            from orfeas.inputs.fetch import fetch_https

            data = fetch_https(text, max_bytes=limit, timeout_s=settings.fetch_timeout_s)
        return _capped(data, limit, "the fetched picture")
    if scheme == "s3":
        return _read_s3(text, object_reader, limit, settings.input_buckets)
    what = "plain http is not accepted (use https)" if scheme == "http" else f"{scheme}: is not accepted"
    raise InvalidInput(f"{what}; give base64, a data URI, an https URL or s3://bucket/key", field=FIELD)


def _decode_data_uri(text: str, limit: int) -> bytes:
    # data:[<media type>][;base64],<data>. The media type is not trusted: the bytes are sniffed
    # when decoded, whatever it says.
    header, comma, payload = text.partition(",")
    if not comma:
        raise InvalidInput("data URI has no ',' before its data", field=FIELD)
    params = [p.strip().lower() for p in header[5:].split(";")]
    if "base64" not in params[1:]:
        raise InvalidInput("only base64 data URIs are accepted (data:image/png;base64,...)", field=FIELD)
    return decode_base64(payload, limit)


def decode_base64(text: str, limit: int) -> bytes:
    """Decode base64 of at most `limit` bytes, refusing a longer string before decoding it."""
    # 4 characters per 3 bytes, plus room for line breaks (MIME wraps at 76: about 1.3 %).
    encoded_limit = -(-limit // 3) * 4
    if len(text) > encoded_limit + encoded_limit // 50 + 1024:
        raise InvalidInput(f"the picture is over the {limit}-byte limit", field=FIELD)
    raw = _WHITESPACE.sub(b"", text.encode("ascii", errors="replace"))
    if len(raw) > encoded_limit + 4:
        raise InvalidInput(f"the picture is over the {limit}-byte limit", field=FIELD)
    if not raw:
        raise InvalidInput("the picture is empty", field=FIELD)
    if not _BASE64_CHARS.match(raw):
        raise InvalidInput("not valid base64 (nor a data URI, https URL or s3:// key)", field=FIELD)
    if b"-" in raw or b"_" in raw:
        raw = raw.replace(b"-", b"+").replace(b"_", b"/")
    raw += b"=" * (-len(raw) % 4)
    try:
        data = base64.b64decode(raw, validate=True)
    except binascii.Error as exc:
        raise InvalidInput(f"not valid base64: {exc}", field=FIELD) from None
    return _capped(data, limit, "the picture")


def is_allowed_object(bucket: str, key: str, allowed: tuple[str, ...]) -> bool:
    """True when `bucket/key` lies in one of the allowed buckets or `bucket/prefix` entries."""
    segments = key.split("/")
    if any(part in (".", "..") for part in segments):
        return False  # S3 keys are literal, but some S3-compatible stores normalise paths
    for entry in allowed:
        name, _, prefix = entry.partition("/")
        if name == bucket and (not prefix or key.startswith(prefix + "/")):
            return True
    return False


def _read_s3(text: str, object_reader: ObjectReader | None, limit: int, allowed: tuple[str, ...]) -> bytes:
    rest = text[5:] if text[:5].lower() == "s3://" else ""
    bucket, slash, key = rest.partition("/")
    if not slash or not key or not _BUCKET.match(bucket):
        raise InvalidInput("give S3 pictures as s3://bucket/key", field=FIELD)
    if not is_allowed_object(bucket, key, allowed):
        # Decided before any S3 call, and worded the same whatever the bucket holds: the answer
        # says nothing about which objects exist.
        raise InvalidInput(
            f"s3://{bucket}/...: pictures are read only from the buckets in ORFEAS_INPUT_BUCKETS",
            field=FIELD,
        )
    if object_reader is None:
        raise InvalidInput(
            f"s3://{bucket}/{key}: s3:// pictures need a configured object store (ORFEAS_S3_BUCKET)",
            field=FIELD,
        )
    try:
        data = object_reader(bucket, key)
    except OrfeasError:
        raise
    except Exception as exc:  # a reader outside our tree: keep the job's error in the tree
        raise StorageError(f"cannot read s3://{bucket}/{key}: {exc}", field=FIELD) from exc
    return _capped(data, limit, f"s3://{bucket}/{key}")


def _capped(data: bytes, limit: int, what: str) -> bytes:
    if len(data) > limit:
        raise InvalidInput(f"{what} is {len(data)} bytes, over the {limit}-byte limit", field=FIELD)
    if not data:
        raise InvalidInput(f"{what} is empty", field=FIELD)
    return data
