"""DATABASE_URL parsing: `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, `postgresql://…`.

A malformed URL fails at start with ConfigError naming DATABASE_URL; the URL's password is never
echoed back in the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from callback_server.settings import DATABASE_URL
from orfeas_contract.errors import ConfigError

_POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class DatabaseUrl:
    kind: Literal["sqlite", "postgresql"]
    target: str  # sqlite: the file path; postgresql: the DSN as asyncpg takes it


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def parse_database_url(url: str) -> DatabaseUrl:
    """Split a DATABASE_URL into the store kind and its target, or raise ConfigError."""
    text = url.strip()
    if not text:
        raise ConfigError("is empty", field=DATABASE_URL)
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise ConfigError(f"malformed URL {_redacted(text)!r}: {exc}", field=DATABASE_URL) from exc
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc:
            raise ConfigError(
                f"sqlite URLs have no host: write sqlite:///relative.db or sqlite:////abs.db, got {text!r}",
                field=DATABASE_URL,
            )
        # urlsplit keeps the single slash after the (empty) authority: strip exactly one.
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not path or path.endswith("/"):
            raise ConfigError(f"sqlite URL names no file: {text!r}", field=DATABASE_URL)
        if path == ":memory:" or path.startswith("file:"):
            raise ConfigError("the store must be a file (several connections share it)", field=DATABASE_URL)
        return DatabaseUrl("sqlite", path)
    if scheme in _POSTGRES_SCHEMES:
        if not parts.hostname and "host=" not in parts.query:
            raise ConfigError(f"postgresql URL names no host: {_redacted(text)!r}", field=DATABASE_URL)
        del port
        return DatabaseUrl("postgresql", text)
    raise ConfigError(
        f"unsupported scheme {parts.scheme!r}: use sqlite:///path.db or postgresql://…", field=DATABASE_URL
    )
