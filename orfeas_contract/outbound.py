"""The one outbound HTTP client for URLs a request names (pictures, job webhooks, client webhooks).

Every address it connects to has passed the address policy (orfeas_contract.netguard):
- The host is resolved once per hop, and the name is refused unless every address it resolves to
  is allowed (one private answer refuses the whole name, so a DNS answer that mixes a public and
  a private address gains nothing). An address literal is judged as it is, never resolved.
- The connection goes to a checked address itself, never to the name, so a second DNS answer
  (rebinding) is never asked for. The URL's name is the Host header, the TLS server name (SNI)
  and the name the certificate must carry; certificates are verified against the system's CAs,
  or `ca_file` / `ssl_context` (tests bring their own CA).
- The addresses are tried in the resolver's order until one accepts the connection (a name with
  AAAA and A records is still reached from a host without an IPv6 route); once a request went
  out, its outcome is the call's.
- Redirects are followed only when asked (`max_redirects`), and every hop is checked like the first.
- One deadline covers the whole call, redirects and body included: per-operation socket timeouts
  alone would let a server that sends a byte a second hold the caller forever, so a timer shuts
  the socket down when the deadline passes.
- The body is streamed and cut at `max_bytes` + 1: a declared Content-Length over the cap is
  refused before any body byte is read. With `identity` (the default) the request asks for no
  Content-Encoding and a response that uses one is refused, so a gzip bomb is never inflated.

Built on the standard library only (http.client, socket, ssl): both deployables import it.

Errors (each with `message`; `shown` is the URL without its query, for messages):

    OutboundError
    ├── InvalidURL (ValueError)     not a URL, a scheme not allowed, credentials, no host, too long
    ├── RefusedAddress              the host does not resolve, or is or resolves to a refused address
    ├── TransportError (OSError)    no usable answer: refused, reset, unreachable, malformed
    │   └── TLSError                the handshake failed: an untrusted certificate, or another name's
    ├── TimedOut (TimeoutError)     the deadline passed
    ├── TooLarge                    the body is over `max_bytes` (declared or streamed)
    └── HTTPError                   an encoded body, a redirect without Location or too many,
                                    or (raise_for_status) a status other than 2xx
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from orfeas_contract.errors import InvalidInput
from orfeas_contract.netguard import Resolver, is_public_address, system_resolver

AddressPolicy = Callable[[str], bool]

MAX_URL_LENGTH = 8192
CHUNK_BYTES = 64 * 1024
DEFAULT_MAX_BYTES = 1024 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = "orfeas-outbound/1"


# -- errors ---------------------------------------------------------------------------------
class OutboundError(Exception):
    """Base of the client's errors; `shown` is the URL concerned, without its query."""

    def __init__(self, message: str, *, shown: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.shown = shown


class InvalidURL(OutboundError, ValueError):
    """The URL cannot be called: not a URL, a scheme not allowed, credentials, no host, too long."""


class RefusedAddress(OutboundError):
    """The host does not resolve, or is or resolves to an address the policy refuses."""


class TransportError(OutboundError, OSError):
    """No usable answer; `reason` is the lower library's words."""

    def __init__(self, message: str, *, shown: str = "", reason: str = "") -> None:
        super().__init__(message, shown=shown)
        self.reason = reason


class TLSError(TransportError):
    """The TLS handshake failed: the certificate is not trusted, or is for another name."""


class TimedOut(OutboundError, TimeoutError):
    """The call's deadline (`timeout_s`) passed."""

    def __init__(self, message: str, *, shown: str = "", timeout_s: float = 0.0) -> None:
        super().__init__(message, shown=shown)
        self.timeout_s = timeout_s


class TooLarge(OutboundError):
    """The body is over the caller's `max_bytes`."""


class HTTPError(OutboundError):
    """The answer is not one the caller takes; `status` when that is the reason."""

    def __init__(self, message: str, *, shown: str = "", status: int | None = None) -> None:
        super().__init__(message, shown=shown)
        self.status = status


# -- URLs and addresses ---------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """One URL, split for a request."""

    url: str
    scheme: str
    host: str  # lower case, brackets stripped for IPv6, IDNA-encoded
    port: int
    path: str  # path and query, what goes on the request line

    @property
    def _authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def shown(self) -> str:
        """The URL for messages, without its query (presigned URLs carry signatures there)."""
        return f"{self.scheme}://{self._authority}{self.path.split('?', 1)[0]}"

    @property
    def host_header(self) -> str:
        return self._authority


def parse_url(
    url: str, *, schemes: Sequence[str] = ("http", "https"), max_length: int = MAX_URL_LENGTH
) -> Target:
    """Split `url`; InvalidURL for another scheme, credentials, a missing host or a bad port."""
    if len(url) > max_length:
        raise InvalidURL(f"URL is longer than {max_length} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise InvalidURL(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes or scheme not in DEFAULT_PORTS:
        allowed = " or ".join(schemes)
        raise InvalidURL(f"only {allowed} URLs are fetched, not {parts.scheme or 'a relative'}:")
    if not host:
        raise InvalidURL("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidURL("credentials in the URL are not accepted")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURL(f"host {host!r} is not a valid name") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url=url, scheme=scheme, host=host, port=port or DEFAULT_PORTS[scheme], path=path)


def resolve_checked(
    host: str,
    port: int,
    *,
    resolver: Resolver = system_resolver,
    allow_address: AddressPolicy = is_public_address,
) -> list[str]:
    """The host's addresses, every one allowed, or RefusedAddress naming the first that is not."""
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        addresses = [host]  # an address literal is checked as it is, never resolved
    except ValueError:
        try:
            addresses = resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise RefusedAddress(f"cannot resolve host {host!r}: {exc}") from None
    if not addresses:
        raise RefusedAddress(f"host {host!r} has no address")
    for address in addresses:
        try:
            allowed = allow_address(address)
        except ValueError:  # not an address at all
            allowed = False
        if not allowed:
            if address == host:
                raise RefusedAddress(f"address {address} is not public")
            raise RefusedAddress(f"host {host!r} resolves to a non-public address ({address})")
    return addresses


def any_address(address: str) -> bool:
    """The policy with private addresses allowed (tests, one-box setups)."""
    return True


def resolve_public(
    host: str, port: int, *, field: str, resolver: Resolver = system_resolver, allow_private: bool = False
) -> list[str]:
    """`resolve_checked` for a request's field: a refusal is InvalidInput naming `field`."""
    policy = any_address if allow_private else is_public_address
    try:
        return resolve_checked(host, port, resolver=resolver, allow_address=policy)
    except RefusedAddress as exc:
        raise InvalidInput(exc.message, field=field) from None


# -- the deadline ---------------------------------------------------------------------------
class _Watchdog:
    """Shuts down every socket it watches once `seconds` have passed (the call's deadline)."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self.deadline = time.monotonic() + seconds
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

    @property
    def passed(self) -> bool:
        return self.fired or time.monotonic() >= self.deadline

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


def _reason(exc: BaseException) -> str:
    """The innermost useful words of a lower library's error (e.g. "certificate verify failed")."""
    while exc.__cause__ is not None and str(exc.__cause__):
        exc = exc.__cause__
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass(frozen=True)
class _Call:
    """What holds for one call, over all its hops."""

    watchdog: _Watchdog
    timeout_s: float
    max_bytes: int
    identity: bool  # ask for no Content-Encoding, refuse one


@contextlib.contextmanager
def _translated(call: _Call, method: str, target: Target) -> Iterator[None]:
    """Lower libraries' errors as the client's, where they enter: past the deadline every failure
    is TimedOut (a shut-down socket reads as a reset or an early end)."""
    try:
        yield
    except OutboundError:
        raise
    except (OSError, http.client.HTTPException) as exc:
        shown = target.shown
        if call.watchdog.passed:
            message = f"{method} {shown} took more than {call.timeout_s:g} s"
            raise TimedOut(message, shown=shown, timeout_s=call.timeout_s) from None
        kind = TLSError if isinstance(exc, ssl.SSLError) else TransportError
        reason = _reason(exc)
        raise kind(f"{method} {shown} failed: {reason}", shown=shown, reason=reason) from None


class _PinnedConnection(http.client.HTTPConnection):
    """A connection to one checked address, TLS (when `context`) checked against `server_name`."""

    def __init__(
        self,
        address: str,
        target: Target,
        context: ssl.SSLContext | None,
        timeout: float,
        watchdog: _Watchdog,
    ) -> None:
        super().__init__(address, target.port, timeout=timeout)
        self._server_name = target.host
        self._context = context
        self._watchdog = watchdog

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self._watchdog.watch(sock)
        if self._context is not None:
            sock = self._context.wrap_socket(sock, server_hostname=self._server_name)
        self.sock = sock


# -- the response ---------------------------------------------------------------------------
@dataclass(eq=False)
class Response:
    """An answer whose body is not read yet (`iter_bytes`, `read`); the call ends when `open`'s
    `with` block does."""

    method: str
    target: Target  # the last hop's
    _call: _Call
    _conn: _PinnedConnection
    _raw: http.client.HTTPResponse

    @property
    def status(self) -> int:
        return self._raw.status

    @property
    def headers(self) -> http.client.HTTPMessage:
        return self._raw.headers

    @property
    def shown(self) -> str:
        return self.target.shown

    def raise_for_status(self) -> None:
        """HTTPError unless the status is 2xx."""
        if not 200 <= self.status < 300:
            raise HTTPError(f"{self.shown} answered HTTP {self.status}", shown=self.shown, status=self.status)

    def iter_bytes(self, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The body in chunks as they arrive, at most `max_bytes` in all (TooLarge past it)."""
        if self.method == "HEAD" or self.status in (204, 304):
            return  # no body, whatever Content-Length says (RFC 9110 §6.4.1)
        cap = self._call.max_bytes
        declared = self._declared_length()
        encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
        if self._call.identity and encoding not in ("", "identity"):
            raise HTTPError(f"{self.shown} sent a {encoding}-encoded body", shown=self.shown)
        total = 0
        with _translated(self._call, self.method, self.target):
            while True:
                chunk = self._raw.read1(min(chunk_bytes, cap + 1 - total))  # never past cap + 1
                if self._call.watchdog.fired:
                    raise OSError("deadline passed")  # the shut-down socket read as an end
                if not chunk:
                    break
                total += len(chunk)
                if total > cap:
                    raise TooLarge(f"{self.shown} is over the {cap}-byte limit", shown=self.shown)
                yield chunk
            if declared is not None and total < declared:
                raise OSError(f"the body ended after {total} of {declared} bytes")

    def read(self) -> bytes:
        """The whole body, at most `max_bytes`."""
        return b"".join(self.iter_bytes())

    def _declared_length(self) -> int | None:
        declared = self.headers.get("Content-Length")
        if declared is None or not declared.strip().isdigit():
            return None
        length, cap = int(declared), self._call.max_bytes
        if length > cap:
            raise TooLarge(f"{self.shown} is {length} bytes, over the {cap}-byte limit", shown=self.shown)
        return length

    def close(self) -> None:
        """End this hop's connection (the call's deadline runs on until `open` returns)."""
        self._raw.close()
        self._conn.close()


# -- the client -----------------------------------------------------------------------------
class OutboundClient:
    """Calls URLs that a request named, on the rules above.

    `resolver`, `allow_address` / `allow_private`, `ca_file` and `ssl_context` are for tests and
    one-box setups; the defaults (system DNS, public addresses only, system CAs) are production's.
    Holds no connection between calls: it is cheap to keep, and safe to share between threads.
    """

    def __init__(
        self,
        *,
        resolver: Resolver = system_resolver,
        allow_private: bool = False,
        allow_address: AddressPolicy | None = None,
        ca_file: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        schemes: Sequence[str] = ("http", "https"),
        user_agent: str = USER_AGENT,
    ) -> None:
        self.resolver = resolver
        self.allow_address = any_address if allow_private else (allow_address or is_public_address)
        self.schemes = tuple(schemes)
        self.user_agent = user_agent
        self._ca_file = ca_file
        self._ssl_context = ssl_context
        self._lock = threading.Lock()

    def parse(self, url: str) -> Target:
        return parse_url(url, schemes=self.schemes)

    def tls_context(self) -> ssl.SSLContext:
        """The context every TLS connection uses; verification is never off."""
        with self._lock:
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context(cafile=self._ca_file)
            context = self._ssl_context
        if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
            raise ValueError("the TLS context must verify certificates and host names")
        return context

    @contextlib.contextmanager
    def open(
        self,
        method: str,
        url: str,
        *,
        timeout_s: float,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_redirects: int = 0,
        identity: bool = True,
        addresses: Sequence[str] | None = None,
    ) -> Iterator[Response]:
        """`with client.open(...) as response`: one request (and up to `max_redirects` redirects),
        everything, the body included, within `timeout_s` of the start.

        The answer's body is unread until the block reads it; its status is the caller's to judge
        (with `max_redirects=0` a 3xx comes back as it is). `addresses` are the URL host's
        addresses when the caller resolved them already (a webhook checked at submit): they are
        checked again, and no other is used for the first hop.
        """
        call = _Call(_Watchdog(timeout_s), timeout_s, max_bytes, identity)
        try:
            response = self._follow(call, method, url, body, headers or {}, max_redirects, addresses)
            try:
                yield response
            finally:
                response.close()
        finally:
            call.watchdog.stop()

    def _follow(
        self,
        call: _Call,
        method: str,
        url: str,
        body: bytes | None,
        headers: dict[str, str],
        max_redirects: int,
        addresses: Sequence[str] | None,
    ) -> Response:
        first = current = self.parse(url)
        for hop in range(max_redirects + 1):
            response = self._exchange(call, method, current, self._checked(current, addresses), body, headers)
            addresses = None  # known for the first hop only
            if max_redirects == 0 or response.status not in REDIRECT_STATUSES:
                return response
            location = response.headers.get("Location")
            response.close()
            if not location:
                raise HTTPError(f"{current.shown} redirected without a Location", shown=current.shown)
            if hop == max_redirects:
                break
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, body = "GET", None
            following = self.parse(urljoin(current.url, location))
            if following.host_header != current.host_header or following.scheme != current.scheme:
                # Credentials are for the origin they were given to.
                headers = {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}
            current = following
        raise HTTPError(f"more than {max_redirects} redirects from {first.shown}", shown=first.shown)

    def _checked(self, target: Target, known: Sequence[str] | None) -> list[str]:
        """The target's addresses (`known`, or else resolved now), every one allowed by the policy."""
        resolver = self.resolver if known is None else (lambda host, port: list(known))
        return resolve_checked(target.host, target.port, resolver=resolver, allow_address=self.allow_address)

    def _exchange(
        self,
        call: _Call,
        method: str,
        target: Target,
        addresses: list[str],
        body: bytes | None,
        headers: dict[str, str],
    ) -> Response:
        sent = {"Host": target.host_header, "User-Agent": self.user_agent, **headers}
        if call.identity:
            sent["Accept-Encoding"] = "identity"
        with _translated(call, method, target):
            conn = self._connect(target, addresses, call.watchdog)
            try:
                conn.request(method, target.path, body=body, headers=sent)
                raw = conn.getresponse()
            except BaseException:
                conn.close()
                raise
        return Response(method, target, call, conn, raw)

    def _connect(self, target: Target, addresses: list[str], watchdog: _Watchdog) -> _PinnedConnection:
        """A connection to the first checked address that accepts one."""
        context = self.tls_context() if target.scheme == "https" else None
        error: OSError = TimeoutError("the deadline passed before connecting")
        for address in addresses:
            remaining = watchdog.deadline - time.monotonic()
            if remaining <= 0 or watchdog.fired:
                break
            conn = _PinnedConnection(address, target, context, remaining, watchdog)
            try:
                conn.connect()
                return conn
            except ssl.SSLError:
                conn.close()
                raise  # the server answered, with the wrong certificate: another address won't help
            except OSError as exc:  # refused, unreachable (an IPv6 address without a route), timed out
                conn.close()
                error = exc
        raise error
