"""Standard Webhooks signatures and the SSRF address guard."""

import base64

import pytest
import standardwebhooks

from orfeas.errors import InvalidInput
from orfeas_contract.netguard import is_public_address
from orfeas_contract.outbound import resolve_public
from orfeas_contract.webhook_signing import rejection, signature_headers

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_our_signature_verifies_with_the_reference_library():
    """Headers we sign are accepted by the standardwebhooks library."""
    body = b'{"type":"completed","job_id":"j1"}'
    headers = signature_headers(SECRET, "msg_1", body)
    assert standardwebhooks.Webhook(SECRET).verify(body, headers) == {"type": "completed", "job_id": "j1"}


def test_reference_library_signature_verifies_with_ours():
    """A signature made by the standardwebhooks library passes our verify."""
    from datetime import UTC, datetime

    body = b'{"a":1}'
    now = datetime.now(tz=UTC)
    sig = standardwebhooks.Webhook(SECRET).sign("msg_2", now, body.decode())
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sig,
    }
    assert rejection(SECRET, headers, body) is None


@pytest.mark.parametrize("tamper", ["body", "id", "secret", "old", "missing"])
def test_tampered_or_stale_messages_fail(tamper):
    """A changed body, id or secret, an old timestamp or missing headers all fail verification."""
    body = b'{"a":1}'
    headers = signature_headers(SECRET, "msg_3", body, timestamp=1_000_000)
    now = 1_000_010.0
    if tamper == "body":
        body = b'{"a":2}'
    elif tamper == "id":
        headers["webhook-id"] = "msg_4"
    elif tamper == "secret":
        headers = signature_headers("whsec_" + base64.b64encode(b"x" * 32).decode(), "msg_3", body, 1_000_000)
    elif tamper == "old":
        now += 3600
    else:
        del headers["webhook-signature"]
    assert rejection(SECRET, headers, body, now=now) is not None
    assert rejection(SECRET, signature_headers(SECRET, "m", b"x", 1_000_000), b"x", now=1_000_010.0) is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "169.254.169.254",
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "fd00::1",
        "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata service
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b:1::a00:1",  # local-use NAT64 prefix
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "::127.0.0.1",  # IPv4-compatible
    ],
)
def test_private_addresses_are_not_public(address):
    """Loopback, private, link-local (metadata) and mapped, NAT64, 6to4 forms of them are refused."""
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "2606:4700::1111", "::ffff:93.184.216.34", "64:ff9b::5db8:d822", "2002:5db8:d822::1"],
)
def test_public_addresses_and_their_ipv6_forms_are_public(address):
    """A public IPv4 address stays public when DNS64 or 6to4 hands it out in IPv6 form."""
    assert is_public_address(address)


def test_a_name_resolving_to_a_private_address_is_refused():
    """A DNS name is refused when any address it resolves to is private."""
    with pytest.raises(InvalidInput) as info:
        resolve_public(
            "rebind.example", 443, field="webhook", resolver=lambda h, p: ["93.184.216.34", "127.0.0.1"]
        )
    assert info.value.field == "webhook"
    assert resolve_public("ok.example", 443, field="w", resolver=lambda h, p: ["93.184.216.34"]) == [
        "93.184.216.34"
    ]
    assert resolve_public("lo", 80, field="w", resolver=lambda h, p: ["127.0.0.1"], allow_private=True) == [
        "127.0.0.1"
    ]


@pytest.mark.parametrize(
    "secret",
    [
        base64.b64encode(b"unprefixed-key-of-32-bytes-long!").decode(),  # no whsec_ prefix
        "whsec_" + base64.b64encode(b"k" * 24).decode().rstrip("="),  # unpadded
        "whsec_" + base64.b64encode(bytes(range(40))).decode(),
    ],
)
def test_secrets_decode_as_the_reference_library_decodes_them_both_ways(secret):
    """Any secret the reference library accepts gives the same key here: what one signs the other
    verifies, with and without the whsec_ prefix, padded or not."""
    from datetime import UTC, datetime

    from orfeas_contract.webhook_signing import check_secret

    assert check_secret(secret) == secret
    body = b'{"type":"progress","job_id":"j9"}'
    ours = signature_headers(secret, "msg_9", body)
    assert standardwebhooks.Webhook(secret).verify(body, ours) == {"type": "progress", "job_id": "j9"}
    now = datetime.now(tz=UTC)
    theirs = {
        "webhook-id": "msg_10",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": standardwebhooks.Webhook(secret).sign("msg_10", now, body.decode()),
    }
    assert rejection(secret, theirs, body) is None


@pytest.mark.parametrize(
    "secret",
    ["plain-text-secret", "whsec_" + base64.b64encode(b"k" * 23).decode(), "whsec_", "x", "whsec_A"],
)
def test_secrets_under_24_bytes_or_not_base64_are_refused(secret):
    """A secret whose key is under 24 bytes (or that does not decode) cannot be used."""
    from orfeas_contract.webhook_signing import check_secret

    with pytest.raises(ValueError, match=r"at least 24|not base64|non-empty"):
        check_secret(secret)


def test_a_rejected_signature_says_why():
    """rejection() names the reason: missing header, malformed or stale timestamp, bad signature."""
    body = b'{"a":1}'
    good = signature_headers(SECRET, "m1", body, timestamp=1_000_000)
    now = 1_000_010.0
    assert rejection(SECRET, good, body, now=now) is None
    assert rejection(SECRET, {k: v for k, v in good.items() if k != "webhook-signature"}, body, now=now) == (
        "missing header"
    )
    assert rejection(SECRET, {**good, "webhook-timestamp": "soon"}, body, now=now) == "malformed timestamp"
    assert rejection(SECRET, good, body, now=now + 3600) == "stale timestamp"
    assert rejection(SECRET, good, b'{"a":2}', now=now) == "bad signature"
