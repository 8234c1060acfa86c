"""Turn a callback's raw bytes into a JSON value, whatever was sent. Never raises.

JSON is tried first whatever the content type (providers mislabel bodies); then form encoding.
Binary, empty or undecodable bodies give None. NaN/Infinity become None so every stored and
served value stays valid JSON. A root that is a JSON string holding JSON is unwrapped (a sender
that encoded its body twice). A body nested too deeply for the parser keeps its shallow part:
every object or array deeper than MAX_PARSE_DEPTH becomes null, so a valid top-level id and
status beside a 5000-deep field are still read.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

# A form body with more fields than this is not a callback worth parsing.
MAX_FORM_FIELDS = 1000
# Far below the parser's recursion limit (about 1000 levels), far above any callback's own shape.
MAX_PARSE_DEPTH = 64
# How many times a JSON string root is unwrapped.
MAX_UNWRAP = 3
# A JSON string literal, or one bracket: what the depth pruning has to see (unrolled for speed).
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


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


def prune_deep(text: str, max_depth: int = MAX_PARSE_DEPTH) -> str:
    """`text` with every object or array opened below `max_depth` levels replaced by null."""
    out: list[str] = []
    depth = 0
    kept_to = 0  # text before this index is in `out` (or cut)
    cutting = False
    for token in _TOKEN.finditer(text):
        char = token.group()
        if char[0] == '"':
            continue
        if char in "[{":
            depth += 1
            if depth == max_depth + 1 and not cutting:
                out.append(text[kept_to : token.start()])
                out.append("null")
                cutting = True
        else:
            if depth == max_depth + 1 and cutting:
                kept_to = token.end()
                cutting = False
            depth -= 1
    if not cutting:
        out.append(text[kept_to:])
    return "".join(out)


def _loads_any_depth(text: str) -> Any:
    try:
        return loads_json(text)
    except ValueError as exc:
        if str(exc) != "nested too deeply":
            raise
    return loads_json(prune_deep(text))


def _unwrapped(value: Any) -> Any:
    """A JSON string root holding an object or array, parsed (a body encoded twice)."""
    for _ in range(MAX_UNWRAP):
        if not isinstance(value, str) or not value.strip().startswith(("{", "[")):
            return value
        try:
            value = _loads_any_depth(value.strip())
        except ValueError:
            return value
    return value


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
        return _unwrapped(_loads_any_depth(stripped))
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
