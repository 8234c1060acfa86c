"""The https picture fetch against a real TLS server on loopback (self-signed, trusted by the test)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

import pytest

from orfeas.errors import InvalidInput
from orfeas.inputs.fetch import fetch_https, parse_https_url
from orfeas.inputs.sources import read_image_source
from orfeas.settings import Settings
from orfeas_contract.netguard import is_public_address
from stack.processes import free_port
from tests.inputs_support import (
    EMBLEM,
    Certificate,
    PictureServer,
    https_picture_server,
    loopback_or_public,
    self_signed,
    table_resolver,
)

PICTURE = EMBLEM.read_bytes()
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def certificate() -> Certificate:
    return self_signed(["images.test", "cdn.test"])


@pytest.fixture
def server(certificate: Certificate) -> Iterator[PictureServer]:
    with https_picture_server(certificate) as state:
        state.routes["/emblem.png"] = PICTURE
        yield state


def fetch(server: PictureServer, certificate: Certificate, url: str, **overrides: object) -> bytes:
    """fetch_https as the tests run it: names resolved from a table, the test CA, loopback allowed."""
    options: dict[str, object] = {
        "max_bytes": 4 * MiB,
        "timeout_s": 5.0,
        "resolver": table_resolver(
            {
                "images.test": ["127.0.0.1"],
                "cdn.test": ["127.0.0.1"],
                "wrong.test": ["127.0.0.1"],
                "internal.test": ["10.0.0.7"],
                "mixed.test": ["127.0.0.1", "192.168.1.20"],
            }
        ),
        "ssl_context": certificate.client_context(),
        "allow_address": loopback_or_public,
    }
    options.update(overrides)
    return fetch_https(url, **options)  # type: ignore[arg-type]


def test_good_picture_arrives_with_host_and_server_name(
    server: PictureServer, certificate: Certificate
) -> None:
    """A picture comes through byte for byte; the request carries the URL's name as Host and SNI."""
    assert fetch(server, certificate, server.url("/emblem.png")) == PICTURE
    assert server.requests[-1].host == f"images.test:{server.port}"
    assert server.server_names == ["images.test"]


def test_redirects_are_followed_and_each_hop_checked(server: PictureServer, certificate: Certificate) -> None:
    """Two redirects (absolute, then relative) lead to the picture."""
    relative = server.url("/redirect?to=/emblem.png", host="cdn.test")
    first = server.url(f"/redirect?to={relative}")
    assert fetch(server, certificate, first) == PICTURE
    assert [r.path.split("?")[0] for r in server.requests] == ["/redirect", "/redirect", "/emblem.png"]
    assert server.server_names == ["images.test", "cdn.test", "cdn.test"]


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("https://internal.test/emblem.png", "non-public address (10.0.0.7)"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is not public"),
        ("https://[::1]/emblem.png", "::1 is not public"),
        ("https://mixed.test/emblem.png", "non-public address (192.168.1.20)"),
        ("http://images.test/emblem.png", "only https"),
        ("file:///etc/passwd", "only https"),
    ],
)
def test_redirect_to_a_private_or_plain_target_is_refused(
    server: PictureServer, certificate: Certificate, target: str, reason: str
) -> None:
    """A redirect to a private, metadata, loopback or non-https target is refused before connecting."""
    with pytest.raises(InvalidInput, match=re.escape(reason)) as caught:
        fetch(server, certificate, server.url(f"/redirect?to={target}"))
    assert caught.value.field == "image"
    assert len(server.requests) == 1  # only the first hop reached a server


def test_loopback_is_refused_by_the_production_rule(server: PictureServer, certificate: Certificate) -> None:
    """Without the test's policy, a loopback server is never contacted, by name or by address."""
    for url in (server.url("/emblem.png"), f"https://127.0.0.1:{server.port}/emblem.png"):
        with pytest.raises(InvalidInput, match=r"not public|non-public"):
            fetch(server, certificate, url, allow_address=is_public_address)
    # ORFEAS_ALLOW_PRIVATE_WEBHOOKS is about webhooks only: pictures stay public-only.
    for settings in (Settings(), Settings(allow_private_webhooks=True)):
        with pytest.raises(InvalidInput, match=re.escape("127.0.0.1 is not public")):
            read_image_source(
                f"https://127.0.0.1:{server.port}/emblem.png", settings=settings, object_reader=None
            )
    assert server.requests == []


def test_redirect_loop_stops_after_five(server: PictureServer, certificate: Certificate) -> None:
    """A redirect loop is cut after 5 redirects (6 requests)."""
    with pytest.raises(InvalidInput, match="more than 5 redirects"):
        fetch(server, certificate, server.url("/loop"))
    assert len(server.requests) == 6


def test_endless_body_is_cut_at_the_limit(server: PictureServer, certificate: Certificate) -> None:
    """A body with no length is read to the limit plus one byte and the connection dropped."""
    with pytest.raises(InvalidInput, match="over the 1048576-byte limit"):
        fetch(server, certificate, server.url("/endless.png"), max_bytes=MiB)
    assert server.finished.wait(10)
    # The server stopped when the client hung up: far short of the 64 MiB it had to send
    # (the rest of what it wrote sat in socket buffers).
    assert server.streamed["/endless.png"] < 16 * MiB


def test_declared_oversize_is_refused_before_the_body(
    server: PictureServer, certificate: Certificate
) -> None:
    """A Content-Length over the limit is refused from the headers, without waiting for the body."""
    with pytest.raises(InvalidInput, match="is 52428800 bytes, over the 1048576-byte limit"):
        fetch(server, certificate, server.url("/declared-huge.png"), max_bytes=MiB, timeout_s=30.0)


@pytest.mark.parametrize("route", ["/slow.png", "/slow-headers.png"])
def test_slow_server_hits_the_total_deadline(
    server: PictureServer, certificate: Certificate, route: str
) -> None:
    """A server that sends a byte (or a header line) every 0.1 s is cut at the 1 s deadline.

    Every single read finishes well within any per-read timeout, so only a deadline over the
    whole fetch stops it; the server sees the connection close long before it is done.
    """
    with pytest.raises(InvalidInput, match="took more than 1 s"):
        fetch(server, certificate, server.url(route), timeout_s=1.0)
    assert server.finished.wait(10)
    assert server.streamed[route] < 100  # of 300+ it would have sent


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        ("/lying.png", "is not a PNG, JPEG or WebP, sent as image/png"),
        ("/gzip.png", "gzip-encoded"),
        ("/missing.png", "answered HTTP 404"),
    ],
)
def test_bad_answers_are_refused(
    server: PictureServer, certificate: Certificate, route: str, reason: str
) -> None:
    """The Content-Type is not trusted, encoded bodies are not inflated, errors are named."""
    with pytest.raises(InvalidInput, match=re.escape(reason)):
        fetch(server, certificate, server.url(route))


def test_certificate_for_another_name_is_refused(server: PictureServer, certificate: Certificate) -> None:
    """The certificate is checked against the URL's name even though the connection goes to an address."""
    with pytest.raises(InvalidInput, match=r"cannot fetch https://wrong\.test.*(hostname|match)"):
        fetch(server, certificate, server.url("/emblem.png", host="wrong.test"))


def test_untrusted_certificate_is_refused(server: PictureServer) -> None:
    """A self-signed certificate that the client does not trust is refused."""
    other = self_signed(["images.test"])
    with pytest.raises(InvalidInput, match="certificate verify failed"):
        fetch(server, other, server.url("/emblem.png"), ssl_context=other.client_context())


def test_closed_port_and_unknown_name(certificate: Certificate) -> None:
    """A refused connection and a name that does not resolve are input errors, not crashes."""
    state = PictureServer(port=free_port())  # a port that was free a moment ago: nothing listens there
    with pytest.raises(InvalidInput, match="cannot fetch"):
        fetch(state, certificate, state.url("/emblem.png"))
    with pytest.raises(InvalidInput, match=re.escape("cannot resolve host 'nowhere.test'")):
        fetch(state, certificate, "https://nowhere.test/x.png")


def test_read_image_source_uses_the_fetcher(server: PictureServer, certificate: Certificate) -> None:
    """An https source goes through the fetch and the size cap of the settings."""
    fetcher = functools.partial(fetch, server, certificate)
    url = server.url("/emblem.png")
    assert read_image_source(url, settings=Settings(), object_reader=None, fetcher=fetcher) == PICTURE
    with pytest.raises(InvalidInput, match="over the 1024-byte limit"):
        read_image_source(url, settings=Settings(max_image_bytes=1024), object_reader=None, fetcher=fetcher)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://user:pw@images.test/x.png", "credentials"),
        ("https:///x.png", "no host"),
        ("https://images.test:99999/x.png", "not a valid URL"),
        ("https://" + "a" * 9000, "longer than 8192"),
    ],
)
def test_malformed_urls(url: str, reason: str) -> None:
    """Malformed https URLs are refused with the field named."""
    with pytest.raises(InvalidInput, match=re.escape(reason)) as caught:
        parse_https_url(url)
    assert caught.value.field == "image"


def test_messages_leave_the_query_out() -> None:
    """A presigned URL's signature stays out of error messages."""
    assert parse_https_url("https://images.test/a/b.png?X-Amz-Signature=secret").shown == (
        "https://images.test/a/b.png"
    )


def test_next_checked_address_is_tried_when_one_refuses(
    server: PictureServer, certificate: Certificate
) -> None:
    """A name with two addresses, the first refusing connections, is fetched from the second."""
    resolver = table_resolver({"images.test": ["127.0.0.2", "127.0.0.1"]})  # the server is on .1 only
    data = fetch(
        server,
        certificate,
        server.url("/emblem.png"),
        resolver=resolver,
        allow_address=lambda a: a in ("127.0.0.1", "127.0.0.2"),
    )
    assert data == PICTURE
    assert len(server.requests) == 1
