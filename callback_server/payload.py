"""Turn a callback's raw bytes into a JSON value, whatever was sent. Never raises.

JSON is tried first whatever the content type (providers mislabel bodies); then form encoding.
Binary, empty or undecodable bodies give None. NaN/Infinity become None so every stored and
served value stays valid JSON.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

# A form body with more fields than this is not a callback worth parsing.
MAX_FORM_FIELDS = 1000


def _no_constants(_name: str) -> None:
    return None


# Built once: json.loads with any keyword builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def loads_json(text: str | bytes) -> Any:
    """json.loads without NaN/Infinity; raises ValueError (also for too-deep nesting)."""
    if isinstance(text, bytes):  # as json.loads does (UTF-8, -16 or -32); a decoding error is a ValueError
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def parse_body(body: bytes, content_type: str = "") -> Any:
    """The body as a JSON value (dict, list, str, number...), a dict for form bodies, else None."""
    if not body:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    stripped = text.strip()
    if not stripped:
        return None
    try:
        return loads_json(stripped)
    except ValueError:
        pass
    if "form-urlencoded" in content_type or ("=" in stripped and not stripped.startswith(("{", "["))):
        try:
            pairs = parse_qsl(stripped, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except ValueError:
            return None
        if pairs:
            return dict(pairs)
    return None
