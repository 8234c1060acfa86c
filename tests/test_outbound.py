"""The contract's outbound client against a loopback https server whose certificate a test CA signed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orfeas_contract.netguard import Resolver
from orfeas_contract.outbound import (
    HTTPError,
    OutboundClient,
    RefusedAddress,
    TimedOut,
    TLSError,
    TooLarge,
    resolve_checked,
)
from tests.inputs_support import (
    EMBLEM,
    Certificate,
    PictureServer,
    cert_pem,
    https_picture_server,
    issue_certificate,
    key_pem,
    loopback_or_public,
    table_resolver,
)

PICTURE = EMBLEM.read_bytes()
MiB = 1024 * 1024
NAMES = {
    "images.test": ["127.0.0.1"],
    "wrong.test": ["127.0.0.1"],
    "internal.test": ["10.0.0.7"],
    "mixed.test": ["127.0.0.1", "10.0.0.7"],
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Certificate, str]:
    """A server certificate for images.test and internal.test, and the PEM file of the CA that signed it."""
    ca, ca_key = issue_certificate("orfeas test CA", [], ca=True)
    cert, key = issue_certificate(
        "images.test", ["images.test", "internal.test"], issuer=(ca.subject, ca_key)
    )
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca_file.write_bytes(cert_pem(ca))
    return Certificate(cert_pem=cert_pem(cert), key_pem=key_pem(key)), str(ca_file)


@pytest.fixture
def server(pki: tuple[Certificate, str]) -> Iterator[PictureServer]:
    with https_picture_server(pki[0]) as state:
        state.routes["/emblem.png"] = PICTURE
        yield state


def client(ca_file: str, resolver: Resolver | None = None, **options: object) -> OutboundClient:
    """The client as these tests run it: names from NAMES, the test CA, loopback allowed."""
    defaults: dict[str, object] = {"allow_address": loopback_or_public}
    defaults.update(options)
    return OutboundClient(resolver=resolver or table_resolver(NAMES), ca_file=ca_file, **defaults)  # type: ignore[arg-type]


def get(c: OutboundClient, url: str, **options: object) -> bytes:
    settings: dict[str, object] = {"timeout_s": 5.0, "max_bytes": 4 * MiB}
    settings.update(options)
    with c.open("GET", url, **settings) as response:  # type: ignore[arg-type]
        response.raise_for_status()
        return response.read()


def test_a_name_resolved_to_loopback_is_reached_with_its_name_as_host_and_sni(server, pki):
    """With loopback allowed, the body arrives whole; Host, SNI and certificate carry the URL's name."""
    assert get(client(pki[1]), server.url("/emblem.png")) == PICTURE
    assert server.requests[-1].host == f"images.test:{server.port}"
    assert server.server_names == ["images.test"]
    assert get(client(pki[1], allow_private=True), server.url("/emblem.png")) == PICTURE


def test_loopback_is_refused_by_name_and_by_address_when_not_allowed(server, pki):
    """The production policy refuses a name resolving to loopback, and a loopback literal, unconnected."""
    production = client(pki[1], allow_address=None)
    for url in (server.url("/emblem.png"), f"https://127.0.0.1:{server.port}/emblem.png"):
        with pytest.raises(RefusedAddress, match=r"127\.0\.0\.1"):
            get(production, url)
    assert server.requests == []


def test_an_answer_mixing_an_allowed_and_a_private_address_is_refused(server, pki):
    """One private address among the answers refuses the name, though the other would connect."""
    with pytest.raises(RefusedAddress, match=r"non-public address \(10\.0\.0\.7\)"):
        get(client(pki[1]), server.url("/emblem.png", host="mixed.test"))
    assert server.requests == []


def test_a_rebinding_resolver_is_asked_once_per_call(server, pki):
    """A resolver whose second answer is private is never asked a second time within a call: the
    connection goes to the first, checked answer; the next call asks again and is refused."""
    answers = [["127.0.0.1"], ["10.0.0.7"]]
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), len(answers)) - 1]

    c = client(pki[1], resolver=rebinding)
    assert get(c, server.url("/emblem.png")) == PICTURE
    assert asked == ["images.test"]
    with pytest.raises(RefusedAddress, match=r"10\.0\.0\.7"):
        get(c, server.url("/emblem.png"))
    assert len(server.requests) == 1


def test_known_addresses_are_checked_again(server, pki):
    """Addresses handed in (resolved earlier) pass the policy again, and no resolver is asked."""

    def never(host: str, port: int) -> list[str]:
        raise AssertionError("no lookup expected")

    c = client(pki[1], resolver=never)
    with c.open("GET", server.url("/emblem.png"), timeout_s=5.0, addresses=["127.0.0.1"]) as response:
        assert response.status == 200
    with (
        pytest.raises(RefusedAddress, match=r"10\.0\.0\.7"),
        c.open("GET", server.url("/emblem.png"), timeout_s=5.0, addresses=["127.0.0.1", "10.0.0.7"]),
    ):
        pass
    assert len(server.requests) == 1


def test_a_redirect_to_a_private_address_is_refused_and_unfollowed_redirects_are_answers(server, pki):
    """Each hop is checked: a redirect to a private name stops before connecting; without
    max_redirects the 3xx itself comes back."""
    url = server.url(f"/redirect?to=https://internal.test:{server.port}/emblem.png")
    with pytest.raises(RefusedAddress, match=r"non-public address \(10\.0\.0\.7\)"):
        get(client(pki[1]), url, max_redirects=5)
    assert len(server.requests) == 1
    with client(pki[1]).open("GET", url, timeout_s=5.0) as response:
        assert response.status == 302
    to_picture = server.url(f"/redirect?to={server.url('/emblem.png')}")
    assert get(client(pki[1]), to_picture, max_redirects=1) == PICTURE
    with pytest.raises(HTTPError, match="more than 2 redirects"):
        get(client(pki[1]), server.url("/loop"), max_redirects=2)


def test_bodies_are_bounded_declared_and_streamed(server, pki):
    """A Content-Length over the cap is refused before the body; an endless body is cut at cap + 1."""
    started = time.monotonic()
    with pytest.raises(TooLarge, match="is 52428800 bytes, over the 1048576-byte limit"):
        get(client(pki[1]), server.url("/declared-huge.png"), max_bytes=MiB, timeout_s=30.0)
    assert time.monotonic() - started < 5  # the server holds the body back for 10 s
    with pytest.raises(TooLarge, match="over the 1048576-byte limit"):
        get(client(pki[1]), server.url("/endless.png"), max_bytes=MiB)
    assert server.finished.wait(10)
    assert server.streamed["/endless.png"] < 16 * MiB  # of 64 MiB: it stopped when the client left


@pytest.mark.parametrize("route", ["/slow.png", "/slow-headers.png"])
def test_a_dripping_server_is_cut_at_the_deadline(server, pki, route):
    """A server sending a byte (or a header line) every 0.1 s is cut when the 1 s deadline passes,
    though no single read ever waits long."""
    started = time.monotonic()
    with pytest.raises(TimedOut, match="took more than 1 s"):
        get(client(pki[1]), server.url(route), timeout_s=1.0)
    assert time.monotonic() - started < 2.5
    assert server.finished.wait(10)
    assert server.streamed[route] < 100  # of 300+ it would have sent


def test_a_certificate_for_another_name_or_from_another_ca_is_refused(server, pki, tmp_path: Path):
    """TLS is checked against the URL's name, not the address connected to, and against the given CA."""
    with pytest.raises(TLSError, match=r"hostname|match"):
        get(client(pki[1]), server.url("/emblem.png", host="wrong.test"))
    other_ca, _ = issue_certificate("another CA", [], ca=True)
    other = tmp_path / "other-ca.pem"
    other.write_bytes(cert_pem(other_ca))
    with pytest.raises(TLSError, match="certificate verify failed"):
        get(client(str(other)), server.url("/emblem.png"))
    assert server.requests == []


def test_an_encoded_body_is_refused_unless_asked_for(server, pki):
    """Asking for identity, a gzip body is refused unread; with identity off, it is read as sent."""
    with pytest.raises(HTTPError, match="gzip-encoded"):
        get(client(pki[1]), server.url("/gzip.png"))
    assert get(client(pki[1]), server.url("/gzip.png"), identity=False).startswith(b"\x1f\x8b")


def test_resolve_checked_judges_literals_without_resolving():
    """An address literal is judged as it is; a name's every answer is judged."""

    def never(host: str, port: int) -> list[str]:
        raise AssertionError("no lookup expected")

    assert resolve_checked("93.184.216.34", 443, resolver=never) == ["93.184.216.34"]
    with pytest.raises(RefusedAddress, match=r"address ::1 is not public"):
        resolve_checked("[::1]", 443, resolver=never)
    with pytest.raises(RefusedAddress, match=r"cannot resolve host 'nowhere\.test'"):
        resolve_checked("nowhere.test", 443, resolver=table_resolver({}))
