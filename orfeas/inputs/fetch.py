"""Fetch a picture over https without letting the URL reach inside the network (SSRF).

The call goes through the contract's outbound client (orfeas_contract.outbound), which resolves
the host once, refuses it unless every address is public (orfeas_contract.netguard), connects to
the checked address itself with the URL's name as Host, TLS server name and certificate name,
and bounds the whole fetch by one deadline and the body by `max_bytes`. Here:
- Only https, for the URL and for every redirect (at most 5, each hop checked like the first).
- The Content-Type header is not trusted; the first bytes must carry PNG, JPEG or WebP magic,
  and reading stops at once when they do not. Content-Encoding is refused (identity is asked
  for), so a gzip bomb is never inflated.
- The client's errors become InvalidInput on the `image` field, where they enter.
"""

from __future__ import annotations

import ssl

from orfeas.errors import InvalidInput
from orfeas.inputs.headers import sniff_format
from orfeas_contract.netguard import Resolver, is_public_address, system_resolver
from orfeas_contract.outbound import (
    AddressPolicy,
    InvalidURL,
    OutboundClient,
    OutboundError,
    Response,
    Target,
    TimedOut,
    TransportError,
    parse_url,
)

FIELD = "image"
MAX_REDIRECTS = 5
SNIFF_BYTES = 12  # enough for the PNG, JPEG and WebP signatures
USER_AGENT = "orfeas-picture-fetch/1"
SCHEMES = ("https",)


def parse_https_url(url: str) -> Target:
    """Split an https URL; InvalidInput for another scheme, credentials, or a missing host."""
    try:
        return parse_url(url, schemes=SCHEMES)
    except InvalidURL as exc:
        raise InvalidInput(exc.message, field=FIELD) from None


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
    client = OutboundClient(
        resolver=resolver, allow_address=allow_address, ssl_context=ssl_context, schemes=SCHEMES
    )
    try:
        with client.open(
            "GET",
            url,
            timeout_s=timeout_s,
            headers={"Accept": "image/png, image/jpeg, image/webp", "User-Agent": USER_AGENT},
            max_bytes=max_bytes,
            max_redirects=max_redirects,
        ) as response:
            response.raise_for_status()
            return _read_picture(response)
    except OutboundError as exc:
        raise _as_input_error(exc) from None


def _read_picture(response: Response) -> bytes:
    """The body, refused as soon as its first bytes are not a picture, whatever the headers claim."""
    chunks: list[bytes] = []
    total = 0
    sniffed = False
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        total += len(chunk)
        if not sniffed and total >= SNIFF_BYTES:
            _check_magic(response, b"".join(chunks))
            sniffed = True
    data = b"".join(chunks)
    if not sniffed:
        _check_magic(response, data)
    return data


def _check_magic(response: Response, head: bytes) -> None:
    if sniff_format(head) is None:
        content_type = response.headers.get("Content-Type")
        kind = f", sent as {content_type.split(';', 1)[0].strip()}" if content_type else ""
        raise InvalidInput(f"{response.shown} is not a PNG, JPEG or WebP{kind}", field=FIELD)


def _as_input_error(exc: OutboundError) -> InvalidInput:
    """The client's error in the words the picture input has always used."""
    if isinstance(exc, TimedOut):
        return InvalidInput(f"fetching {exc.shown} took more than {exc.timeout_s:g} s", field=FIELD)
    if isinstance(exc, TransportError):
        return InvalidInput(f"cannot fetch {exc.shown}: {exc.reason}", field=FIELD)
    return InvalidInput(exc.message, field=FIELD)
