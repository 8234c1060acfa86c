"""The callback server's settings, read once from the environment into one frozen, validated object.

Every variable name is a constant below; a malformed value fails at start with ConfigError naming it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from orfeas_contract.envvars import read_bool, read_float, read_int, read_optional, read_str
from orfeas_contract.errors import ConfigError
from orfeas_contract.webhook_signing import ALLOW_PRIVATE_WEBHOOKS, WEBHOOK_SECRET, check_webhook_secret

PORT = "PORT"
HOST = "HOST"
DATABASE_URL = "DATABASE_URL"
PUBLIC_URL = "PUBLIC_URL"
CALLBACK_TOKEN = "CALLBACK_TOKEN"
RUNPOD_ENDPOINT_URL = "RUNPOD_ENDPOINT_URL"
RUNPOD_ENDPOINT_ID = "RUNPOD_ENDPOINT_ID"
RUNPOD_API_KEY = "RUNPOD_API_KEY"
RUNPOD_LOCAL = "RUNPOD_LOCAL"
REFRESH_SECONDS = "CALLBACK_REFRESH_SECONDS"
UPSTREAM_TIMEOUT_S = "CALLBACK_UPSTREAM_TIMEOUT_S"
MAX_BODY_BYTES = "CALLBACK_MAX_BODY_BYTES"
STORE_WAIT_S = "CALLBACK_STORE_WAIT_S"
JOB_DEADLINE_S = "CALLBACK_JOB_DEADLINE_S"
RECONCILE_SECONDS = "CALLBACK_RECONCILE_SECONDS"
LEADER_LEASE_SECONDS = "LEADER_LEASE_SECONDS"
LOG_LEVEL = "LOG_LEVEL"
API_KEYS = "API_KEYS"
HEAD_TIMEOUT_S = "CALLBACK_HEAD_TIMEOUT_S"
BODY_TIMEOUT_S = "CALLBACK_BODY_TIMEOUT_S"
MAX_CONNECTIONS = "CALLBACK_MAX_CONNECTIONS"
MODEL_ORIGINS = "ORFEAS_PAGE_MODEL_ORIGINS"
BUCKET_ENDPOINT_URL = "BUCKET_ENDPOINT_URL"

DEFAULT_DATABASE_URL = "sqlite:///./callback_server.db"
RUNPOD_API_BASE = "https://api.runpod.ai/v2/"
# RunPod keeps an async job's result for 30 minutes after it finishes; /status is useless after.
RUNPOD_RESULT_WINDOW_S = 30 * 60
_LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR"})
# A key shorter than this is guessable; `secrets.token_urlsafe(24)` gives 32 characters.
MIN_API_KEY_CHARS = 16
_LABEL_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_KEY_RE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces: what a Bearer header carries


@dataclass(frozen=True)
class ApiKey:
    """One client's key and the label its requests are logged under (never the key)."""

    label: str
    key: str

    def __repr__(self) -> str:  # settings get printed in tracebacks: keep the key out
        return f"ApiKey(label={self.label!r})"


def parse_api_keys(raw: str | None) -> tuple[ApiKey, ...]:
    """`API_KEYS`: comma-separated `label:key` or bare `key` (labelled key-1, key-2, ...)."""
    if raw is None:
        return ()
    keys: list[ApiKey] = []
    for n, item in enumerate((part.strip() for part in raw.split(",")), start=1):
        if not item:
            continue
        label, colon, key = item.partition(":")
        if not colon:
            label, key = f"key-{n}", item
        if not _LABEL_RE.match(label):
            raise ConfigError(f"item {n}: a label is 1-64 of A-Z a-z 0-9 _ . -", field=API_KEYS)
        if len(key) < MIN_API_KEY_CHARS or not _KEY_RE.match(key):
            raise ConfigError(
                f"item {n} ({label}): a key is at least {MIN_API_KEY_CHARS} printable characters",
                field=API_KEYS,
            )
        if any(k.label == label for k in keys):
            raise ConfigError(f"label {label!r} is given twice", field=API_KEYS)
        keys.append(ApiKey(label, key))
    return tuple(keys)


def _http_url(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"expected an http(s) URL, got {value!r}", field=name)
    return value.rstrip("/")


def _origin(value: str, name: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"expected an http(s) origin, got {value!r}", field=name)
    return f"{parts.scheme}://{parts.netloc}"


def parse_model_origins(listed: str | None, bucket_endpoint: str | None) -> tuple[str, ...]:
    """Where the status page may load meshes from besides this server: ORFEAS_PAGE_MODEL_ORIGINS
    (comma-separated origins), else the origin of BUCKET_ENDPOINT_URL, else any https origin."""
    if listed:
        return tuple(_origin(item, MODEL_ORIGINS) for item in listed.split(",") if item.strip())
    if bucket_endpoint:
        return (_origin(bucket_endpoint, BUCKET_ENDPOINT_URL),)
    return ("https:",)


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerSettings:
    host: str = "0.0.0.0"
    port: int = 8080
    database_url: str = DEFAULT_DATABASE_URL
    public_url: str | None = None  # where RunPod and the worker reach us; None: no webhooks asked for
    callback_token: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(
        default=None, repr=False
    )  # Standard Webhooks secret (worker callbacks, client webhooks)
    allow_private_webhooks: bool = False  # client webhooks to private addresses (tests, one-box setups)
    runpod_endpoint_url: str | None = None  # None: submitting and upstream refresh are unavailable
    runpod_api_key: str | None = field(default=None, repr=False)
    runpod_local: bool = False  # RunPod's local dev server (`handler.py --rp_serve_api`)
    refresh_s: float = 10.0  # a non-terminal job's row older than this may be refreshed upstream
    upstream_timeout_s: float = 5.0
    max_body_bytes: int = 8 * 1024 * 1024  # larger callback bodies are stored truncated
    # A request head must arrive within this of the connection opening (or of the last answer on
    # a kept-alive one); providers send theirs in milliseconds.
    head_timeout_s: float = 10.0
    # A request body must arrive within this once the head is in (8 MiB at 2 Mbit/s is ~34 s).
    body_timeout_s: float = 60.0
    # Open connections at most (kept 64 below the process's descriptor limit, connections.py).
    max_connections: int = 4096
    store_wait_s: float = 10.0  # how long a request waits for the store to open before a 503
    job_deadline_s: float = 2 * 3600.0  # past it a non-terminal job becomes TIMED_OUT
    reconcile_s: float = 5.0
    lease_s: float = 10.0
    log_level: str = "INFO"
    api_keys: tuple[ApiKey, ...] = field(default=(), repr=False)  # empty: the job API (/v1/*) is closed
    model_origins: tuple[str, ...] = ("https:",)  # the status page's mesh sources (parse_model_origins)

    def __post_init__(self) -> None:
        check_webhook_secret(self.webhook_secret)

    @property
    def auth_required(self) -> bool:
        """Callbacks must prove themselves once a token or a signing secret is configured."""
        return bool(self.callback_token or self.webhook_secret)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerSettings:
        e = os.environ if env is None else env
        d = cls()  # each default is written once, on its field
        endpoint = _http_url(read_optional(e, RUNPOD_ENDPOINT_URL), RUNPOD_ENDPOINT_URL)
        endpoint_id = read_optional(e, RUNPOD_ENDPOINT_ID)
        if endpoint is None and endpoint_id is not None:
            if not endpoint_id.replace("-", "").replace("_", "").isalnum():
                raise ConfigError(f"not an endpoint id: {endpoint_id!r}", field=RUNPOD_ENDPOINT_ID)
            endpoint = RUNPOD_API_BASE + endpoint_id
        local_default = endpoint is not None and is_loopback_url(endpoint)
        database_url = read_str(e, DATABASE_URL, d.database_url)
        if not database_url.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ConfigError(
                f"expected sqlite:///path or postgresql://..., got {database_url!r}", field=DATABASE_URL
            )
        log_level = read_str(e, LOG_LEVEL, d.log_level).upper()
        if log_level not in _LOG_LEVELS:
            raise ConfigError(f"expected one of {sorted(_LOG_LEVELS)}, got {log_level!r}", field=LOG_LEVEL)
        return cls(
            host=read_str(e, HOST, d.host),
            port=read_int(e, PORT, d.port, lo=0, hi=65535),
            database_url=database_url,
            public_url=_http_url(read_optional(e, PUBLIC_URL), PUBLIC_URL),
            callback_token=read_optional(e, CALLBACK_TOKEN),
            webhook_secret=read_optional(e, WEBHOOK_SECRET),
            allow_private_webhooks=read_bool(e, ALLOW_PRIVATE_WEBHOOKS, d.allow_private_webhooks),
            runpod_endpoint_url=endpoint,
            runpod_api_key=read_optional(e, RUNPOD_API_KEY),
            runpod_local=read_bool(e, RUNPOD_LOCAL, local_default),
            refresh_s=read_float(e, REFRESH_SECONDS, d.refresh_s, lo=0.0, hi=3600.0),
            upstream_timeout_s=read_float(e, UPSTREAM_TIMEOUT_S, d.upstream_timeout_s, lo=0.1, hi=120.0),
            max_body_bytes=read_int(e, MAX_BODY_BYTES, d.max_body_bytes, lo=1024, hi=256 * 1024 * 1024),
            head_timeout_s=read_float(e, HEAD_TIMEOUT_S, d.head_timeout_s, lo=0.1, hi=3600.0),
            body_timeout_s=read_float(e, BODY_TIMEOUT_S, d.body_timeout_s, lo=0.1, hi=3600.0),
            max_connections=read_int(e, MAX_CONNECTIONS, d.max_connections, lo=16, hi=1 << 20),
            store_wait_s=read_float(e, STORE_WAIT_S, d.store_wait_s, lo=0.0, hi=300.0),
            job_deadline_s=read_float(e, JOB_DEADLINE_S, d.job_deadline_s, lo=1.0, hi=7 * 24 * 3600.0),
            reconcile_s=read_float(e, RECONCILE_SECONDS, d.reconcile_s, lo=0.05, hi=600.0),
            lease_s=read_float(e, LEADER_LEASE_SECONDS, d.lease_s, lo=0.5, hi=600.0),
            log_level=log_level,
            api_keys=parse_api_keys(read_optional(e, API_KEYS)),
            model_origins=parse_model_origins(
                read_optional(e, MODEL_ORIGINS), read_optional(e, BUCKET_ENDPOINT_URL)
            ),
        )
