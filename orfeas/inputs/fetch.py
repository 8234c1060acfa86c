"""Fetch a picture over https without letting the URL reach inside the network (SSRF).

- Only https. The host is resolved first and every address it resolves to must be public
  (orfeas_contract.netguard: no private, loopback, link-local/metadata, shared, unspecified or multicast
  address). The connection then goes to the checked address itself, with the original name as
  the Host header and the TLS server name, so a second DNS answer cannot swap a private address
  in (rebinding) and the certificate is still verified against the name.
- Redirects are followed by hand, at most 5, and every hop is checked like the first.
- The body is streamed and cut at `max_bytes` + 1: a declared Content-Length over the limit is
  refused before any body byte is read, an undeclared one as soon as it passes the limit.
- One deadline covers the whole fetch, redirects included: per-operation socket timeouts alone
  would let a server that sends a byte a second hold the job forever, so a timer shuts the
  socket down when the deadline passes.
- The Content-Type header is not trusted; the first bytes must carry PNG, JPEG or WebP magic.
  Content-Encoding is refused (identity is asked for), so a gzip bomb is never inflated.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from orfeas.errors import InvalidInput
from orfeas.inputs.headers import sniff_format
from orfeas_contract.netguard import Resolver, is_public_address, system_resolver

if TYPE_CHECKING:
    from urllib3.connection import HTTPSConnection
    from urllib3.response import HTTPResponse

FIELD = "image"
MAX_REDIRECTS = 5
MAX_URL_LENGTH = 8192
CHUNK_BYTES = 64 * 1024
SNIFF_BYTES = 12  # enough for the PNG, JPEG and WebP signatures
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "orfeas-picture-fetch/1"

AddressPolicy = Callable[[str], bool]


@dataclass(frozen=True)
class HttpsTarget:
    url: str
    host: str  # as in the URL, lower case, brackets stripped for IPv6
    port: int
    path: str  # path and query, what goes on the request line

    @property
    def shown(self) -> str:
        """The URL for messages, without its query (presigned URLs carry signatures there)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == 443 else f":{self.port}"
        return f"https://{host}{port}{self.path.split('?', 1)[0]}"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"


def parse_https_url(url: str) -> HttpsTarget:
    """Split an https URL; InvalidInput for another scheme, credentials, or a missing host."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"URL is longer than {MAX_URL_LENGTH} characters", field=FIELD)
    try:
        parts = urlsplit(url)
        port = parts.port or 443
        host = parts.hostname
    except ValueError as exc:
        raise InvalidInput(f"not a valid URL: {exc}", field=FIELD) from None
    if parts.scheme.lower() != "https":
        raise InvalidInput(f"only https URLs are fetched, not {parts.scheme or 'a relative'}:", field=FIELD)
    if not host:
        raise InvalidInput("the URL has no host", field=FIELD)
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("credentials in the URL are not accepted", field=FIELD)
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidInput(f"host {host!r} is not a valid name", field=FIELD) from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return HttpsTarget(url=url, host=host, port=port, path=path)


def checked_addresses(target: HttpsTarget, resolver: Resolver, allow_address: AddressPolicy) -> list[str]:
    """The host's addresses, all of them allowed, or InvalidInput naming the first that is not."""
    try:
        ipaddress.ip_address(target.host)
        addresses = [target.host]  # an address literal is checked as it is, never resolved
    except ValueError:
        try:
            addresses = resolver(target.host, target.port)
        except (OSError, UnicodeError) as exc:
            raise InvalidInput(f"cannot resolve host {target.host!r}: {exc}", field=FIELD) from None
    if not addresses:
        raise InvalidInput(f"host {target.host!r} has no address", field=FIELD)
    for address in addresses:
        try:
            allowed = allow_address(address)
        except ValueError:
            allowed = False
        if not allowed:
            if address == target.host:
                raise InvalidInput(f"address {address} is not public", field=FIELD)
            raise InvalidInput(
                f"host {target.host!r} resolves to a non-public address ({address})", field=FIELD
            )
    return addresses


class _Watchdog:
    """Shuts down every socket it watches once `seconds` have passed (the fetch's total deadline)."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)

    def watch(self, sock: socket.socket) -> None:
        # A duplicate of the descriptor that this object owns: shutting it down stops the
        # connection for every holder, and it can never be a reused descriptor of something else.
        dup = sock.dup()
        with self._lock:
            self._sockets.append(dup)
            if self.fired:
                _shutdown(dup)

    def stop(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed by the peer or by us
        sock.shutdown(socket.SHUT_RDWR)


def fetch_https(
    url: str,
    *,
    max_bytes: int,
    timeout_s: float,
    resolver: Resolver = system_resolver,
    ssl_context: ssl.SSLContext | None = None,
    allow_address: AddressPolicy = is_public_address,
    max_redirects: int = MAX_REDIRECTS,
) -> bytes:
    """The picture at `url` (https), at most `max_bytes`, within `timeout_s` in all.

    `resolver`, `ssl_context` (trusted CAs; the system's when None) and `allow_address` are for
    tests that serve https from a local server; the defaults are what production uses.
    """
    watchdog = _Watchdog(timeout_s)
    deadline = time.monotonic() + timeout_s
    try:
        current = url
        for _ in range(max_redirects + 1):
            target = parse_https_url(current)
            addresses = checked_addresses(target, resolver, allow_address)
            outcome = _get(target, addresses, max_bytes, deadline, ssl_context, watchdog, timeout_s)
            if isinstance(outcome, bytes):
                return outcome
            current = urljoin(current, outcome)
        first = parse_https_url(url).shown
        raise InvalidInput(f"more than {max_redirects} redirects from {first}", field=FIELD)
    finally:
        watchdog.stop()


def _get(
    target: HttpsTarget,
    addresses: list[str],
    max_bytes: int,
    deadline: float,
    ssl_context: ssl.SSLContext | None,
    watchdog: _Watchdog,
    timeout_s: float,
) -> bytes | str:
    """One GET: the body (bytes) on 200, the Location (str) on a redirect; InvalidInput otherwise."""
    import urllib3.exceptions

    conn = None
    try:
        conn = _connect(target, addresses, deadline, ssl_context, watchdog)
        conn.request(
            "GET",
            target.path,
            headers={
                "Host": target.host_header,
                "User-Agent": USER_AGENT,
                "Accept": "image/png, image/jpeg, image/webp",
                "Accept-Encoding": "identity",
            },
            preload_content=False,
            decode_content=False,
        )
        response = conn.getresponse()
        if response.status in REDIRECT_STATUSES:
            location = response.headers.get("Location")
            if not location:
                raise InvalidInput(f"{target.shown} redirected without a Location", field=FIELD)
            return location
        if response.status != 200:
            raise InvalidInput(f"{target.shown} answered HTTP {response.status}", field=FIELD)
        return _read_body(target, response, max_bytes, watchdog)
    except InvalidInput:
        raise
    except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
        if watchdog.fired or time.monotonic() >= deadline:
            raise _timed_out(target, timeout_s) from None
        raise InvalidInput(f"cannot fetch {target.shown}: {_reason(exc)}", field=FIELD) from None
    finally:
        if conn is not None:
            conn.close()


def _connect(
    target: HttpsTarget,
    addresses: list[str],
    deadline: float,
    ssl_context: ssl.SSLContext | None,
    watchdog: _Watchdog,
) -> HTTPSConnection:
    """A verified TLS connection to the first checked address that answers."""
    import urllib3.exceptions
    from urllib3.connection import HTTPSConnection

    class WatchedConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            watchdog.watch(sock)
            return sock

    error: Exception | None = None
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or watchdog.fired:
            break
        conn = WatchedConnection(
            address,
            target.port,
            timeout=remaining,
            server_hostname=target.host,  # SNI, and the name the certificate must carry
            ssl_context=ssl_context,
            cert_reqs="CERT_REQUIRED",
        )
        try:
            conn.connect()
            return conn
        except (ssl.SSLError, urllib3.exceptions.SSLError):
            conn.close()
            raise  # the server answered, with the wrong certificate: another address won't help
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            # Refused, unreachable (an IPv6 address without a route), timed out: urllib3 wraps
            # these in NewConnectionError / ConnectTimeoutError, which are not OSErrors.
            conn.close()
            error = exc
    if error is None:
        raise TimeoutError("deadline passed before connecting")
    raise error


def _read_body(target: HttpsTarget, response: HTTPResponse, max_bytes: int, watchdog: _Watchdog) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise InvalidInput(
            f"{target.shown} is {int(declared)} bytes, over the {max_bytes}-byte limit", field=FIELD
        )
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise InvalidInput(f"{target.shown} sent a {encoding}-encoded body", field=FIELD)
    chunks: list[bytes] = []
    total = 0
    sniffed = False
    while True:
        # Never ask for more than one byte past the limit.
        chunk = response.read(min(CHUNK_BYTES, max_bytes + 1 - total), decode_content=False)
        if watchdog.fired:
            raise OSError("deadline passed")
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise InvalidInput(f"{target.shown} is over the {max_bytes}-byte limit", field=FIELD)
        if not sniffed and total >= SNIFF_BYTES:
            _check_magic(target, b"".join(chunks), response.headers.get("Content-Type"))
            sniffed = True
    data = b"".join(chunks)
    if not sniffed:
        _check_magic(target, data, response.headers.get("Content-Type"))
    return data


def _check_magic(target: HttpsTarget, head: bytes, content_type: str | None) -> None:
    """Stop reading at once when the first bytes are not a picture, whatever the headers claim."""
    if sniff_format(head) is None:
        kind = f", sent as {content_type.split(';', 1)[0].strip()}" if content_type else ""
        raise InvalidInput(f"{target.shown} is not a PNG, JPEG or WebP{kind}", field=FIELD)


def _timed_out(target: HttpsTarget, timeout_s: float) -> InvalidInput:
    return InvalidInput(f"fetching {target.shown} took more than {timeout_s:g} s", field=FIELD)


def _reason(exc: BaseException) -> str:
    # urllib3 nests the useful part (e.g. "certificate verify failed") inside its own wrappers.
    while exc.__cause__ is not None and str(exc.__cause__):
        exc = exc.__cause__
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
