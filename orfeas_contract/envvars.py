"""Explicit parsing of environment variables; a bad value raises ConfigError naming the variable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from orfeas_contract.errors import ConfigError

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})

T = TypeVar("T", int, float)


def read_str(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(name, default).strip() or default


def read_optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def read_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """Parse a boolean strictly: "false", "0", "no", "off" are false; anything unknown is an error."""
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"expected a boolean (true/false/1/0), got {raw!r}", field=name)


def _read_number(
    env: Mapping[str, str], name: str, default: T, kind: type[T], lo: T | None, hi: T | None
) -> T:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"expected {kind.__name__}, got {raw!r}", field=name) from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{value} is outside [{lo}, {hi}]", field=name)
    return value


def read_int(
    env: Mapping[str, str], name: str, default: int, *, lo: int | None = None, hi: int | None = None
) -> int:
    return _read_number(env, name, default, int, lo, hi)


def read_float(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    lo: float | None = None,
    hi: float | None = None,
) -> float:
    return _read_number(env, name, default, float, lo, hi)


def read_choice(env: Mapping[str, str], name: str, default: str, choices: frozenset[str]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(f"expected one of {sorted(choices)}, got {value!r}", field=name)
    return value
