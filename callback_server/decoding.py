"""Undo a callback's Content-Encoding, bounded; never raises.

aiohttp's own inflation is turned off for the server (app.py): it ran on the event loop, had no
bound on the inflated size, and a body it could not decode (zstd without its library, invalid
gzip) escaped the handler as a 500. The stored body is always the bytes as received; this gives
the bytes to parse, or None with a note saying why they could not be had.

Encodings (RFC 9110 8.4, applied in the order listed, so undone from the last): gzip / x-gzip,
deflate (zlib-wrapped, or raw as some servers send it), br (brotli), zstd (backports.zstd on
Python < 3.14), identity. Inflation stops at `limit` bytes: past it the body counts as over-size.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

# A body under this many bytes with no encoding is decoded on the loop: the thread hand-off
# (about 50 µs) costs more than the parse.
INLINE_MAX_BYTES = 64 * 1024
_STEP = 64 * 1024  # compressed bytes fed per call, so the output bound is checked often


class Decoded(NamedTuple):
    data: bytes | None  # None: could not be decoded
    note: str | None = None  # what was done or why it failed, for the stored row
    truncated: bool = False  # inflated past the limit (data holds the first `limit` bytes)


class _TooLarge(Exception):
    def __init__(self, kept: bytes) -> None:
        self.kept = kept


def content_encodings(headers: dict[str, str]) -> list[str]:
    """The Content-Encoding codings, lower case, without identity."""
    raw = headers.get("Content-Encoding")
    if raw is None:
        raw = next((v for k, v in headers.items() if k.lower() == "content-encoding"), "")
    return codings_of(raw)


def codings_of(raw: str) -> list[str]:
    """The codings a Content-Encoding value names, lower case, without identity."""
    if not raw:
        return []
    return [c.strip().lower() for c in raw.split(",") if c.strip() and c.strip().lower() != "identity"]


def needs_thread(content_encoding: str, body: bytes) -> bool:
    """True when decoding and parsing this body is worth moving off the event loop."""
    return len(body) > INLINE_MAX_BYTES or bool(codings_of(content_encoding))


def _drain(step: Callable[[bytes, int], bytes], data: bytes, limit: int) -> bytes:
    out = bytearray()
    for start in range(0, max(len(data), 1), _STEP):
        out += step(data[start : start + _STEP], limit + 1 - len(out))
        if len(out) > limit:
            raise _TooLarge(bytes(out[:limit]))
    return bytes(out)


def _zlib(data: bytes, limit: int, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits)

    def step(chunk: bytes, room: int) -> bytes:
        out = inflater.decompress(inflater.unconsumed_tail + chunk, room)
        return out

    out = _drain(step, data, limit)
    while inflater.unconsumed_tail and len(out) <= limit:
        out += inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out))
    if len(out) > limit:
        raise _TooLarge(out[:limit])
    if not inflater.eof:
        raise ValueError("the compressed stream ends early")
    return out


def _gzip(data: bytes, limit: int) -> bytes:
    return _zlib(data, limit, 31)


def _deflate(data: bytes, limit: int) -> bytes:
    try:
        return _zlib(data, limit, 15)
    except zlib.error:
        return _zlib(data, limit, -15)  # raw deflate, as some senders mean by "deflate"


def _brotli(data: bytes, limit: int) -> bytes:
    import brotli

    inflater = brotli.Decompressor()
    out = bytearray()
    for start in range(0, max(len(data), 1), _STEP):
        piece = inflater.process(data[start : start + _STEP], output_buffer_limit=limit + 1 - len(out))
        out += piece
        while not inflater.can_accept_more_data() and len(out) <= limit:
            out += inflater.process(b"", output_buffer_limit=limit + 1 - len(out))
        if len(out) > limit:
            raise _TooLarge(bytes(out[:limit]))
    if not inflater.is_finished():
        raise ValueError("the compressed stream ends early")
    return bytes(out)


def _zstd_module() -> Any:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+
    except ImportError:
        from backports import zstd  # type: ignore[no-redef,unused-ignore]  # before 3.14
    return zstd


def _zstd(data: bytes, limit: int) -> bytes:
    zstd = _zstd_module()
    out = bytearray()
    rest = data
    while rest:  # a zstd body may hold several frames
        inflater = zstd.ZstdDecompressor()
        out += inflater.decompress(rest, max_length=limit + 1 - len(out))
        while not inflater.eof and not inflater.needs_input and len(out) <= limit:
            out += inflater.decompress(b"", max_length=limit + 1 - len(out))
        if len(out) > limit:
            raise _TooLarge(bytes(out[:limit]))
        if not inflater.eof:
            raise ValueError("the compressed stream ends early")
        rest = inflater.unused_data
    return bytes(out)


_DECODERS: dict[str, Callable[[bytes, int], bytes]] = {
    "gzip": _gzip,
    "x-gzip": _gzip,
    "deflate": _deflate,
    "br": _brotli,
    "zstd": _zstd,
}


def decode_body(body: bytes, encodings: list[str], limit: int) -> Decoded:
    """`body` with `encodings` undone, at most `limit` bytes of it. Never raises."""
    if not encodings:
        return Decoded(body)
    data = body
    for coding in reversed(encodings):
        decoder = _DECODERS.get(coding)
        if decoder is None:
            return Decoded(None, f"content-encoding {coding!r} is not supported; body stored as received")
        try:
            data = decoder(data, limit)
        except _TooLarge as exc:
            note = f"content-encoding {coding!r} inflates past {limit} bytes; body stored as received"
            return Decoded(exc.kept, note, truncated=True)
        except ImportError:
            return Decoded(
                None, f"content-encoding {coding!r}: no decoder installed; body stored as received"
            )
        except Exception as exc:  # zlib.error, brotli.error, ZstdError, ValueError: all bad input
            note = (
                f"content-encoding {coding!r} does not decode ({type(exc).__name__}); body stored as received"
            )
            return Decoded(None, note)
    return Decoded(data, f"content-encoding {', '.join(encodings)}: {len(data)} bytes once decoded")
