"""Webhook delivery to a real loopback receiver, verified with the `standardwebhooks` library."""

from __future__ import annotations

import itertools
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook

from orfeas.errors import InvalidInput
from orfeas.retry_policy import TERMINAL_WEBHOOK_BACKOFF, Backoff
from orfeas_contract.events import EventType
from orfeas_worker.webhooks import WebhookSender, parse_webhook
from stack.processes import free_port
from tests.receivers import serve_receiver

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FAST = Backoff(attempts=5, initial_s=0.01, max_s=0.05, jitter_s=0.01)


def _sender(**kw):
    return WebhookSender(backoff=FAST, terminal_timeout_s=2.0, **kw)


def _target(url, secret=SECRET, resolver=None):
    kw = {"resolver": resolver} if resolver else {}
    value = {"url": url, "secret": secret} if secret else url
    return parse_webhook(value, allow_private=True, **kw)


def _verified(received):
    """Verify with the reference library; return the parsed body."""
    return Webhook(SECRET).verify(received.body, received.headers)


def test_terminal_event_survives_a_receiver_that_fails_twice(webhook_receiver):
    """Two 503s, then 200: completed arrives on the third try, same webhook-id, each validly signed."""
    webhook_receiver.statuses = [503, 503]
    hooks = _sender().for_job(_target(webhook_receiver.url), "job-1")
    delivery = hooks.finish(EventType.COMPLETED, output={"meshes": {}})
    assert delivery is not None
    assert delivery.delivered
    assert delivery.attempts == 3
    got = webhook_receiver.wait_for(3)
    assert [r.status for r in got] == [503, 503, 200]
    assert len({r.headers["webhook-id"] for r in got}) == 1
    for received in got:
        body = _verified(received)
        assert body == {
            "type": "completed",
            "id": "job-1",
            "job_id": "job-1",
            "error": None,
            "attempt": hooks.attempt,
            "status": "COMPLETED",
            "progress": None,
            "output": {"meshes": {}},
        }
    assert got[0].path == "/hooks/orfeas"
    assert got[0].headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("status", [400, 302])
def test_a_permanent_refusal_is_not_retried(webhook_receiver, status):
    """A 4xx (or a redirect, never followed) ends delivery after one try, without raising."""
    webhook_receiver.statuses = [status]
    hooks = _sender().for_job(_target(webhook_receiver.url), "job-2")
    delivery = hooks.finish(EventType.FAILED, error={"code": "stage_failed", "message": "x"})
    assert delivery is not None
    assert not delivery.delivered
    assert delivery.attempts == 1
    assert len(webhook_receiver.wait_for(1)) == 1


def test_an_unreachable_receiver_costs_bounded_tries_and_never_raises():
    """Connection refused on every try: all tries are spent, the error is recorded, nothing is raised."""
    port = free_port()  # a port that was free a moment ago: nothing listens there
    hooks = _sender().for_job(_target(f"http://127.0.0.1:{port}/x"), "job-3")
    delivery = hooks.finish(EventType.COMPLETED, output={})
    assert delivery is not None
    assert not delivery.delivered
    assert delivery.attempts == FAST.attempts
    assert delivery.error


def test_progress_is_coalesced_and_the_terminal_event_comes_last(webhook_receiver):
    """A burst of progress sends the latest state at most every interval; completed comes last."""
    hooks = _sender(progress_interval_s=0.5).for_job(_target(webhook_receiver.url), "job-4")
    for i in range(200):
        hooks.progress({"stage": "shape", "fraction": i / 200, "eta_seconds": None})
        time.sleep(0.005)  # ~1 s of progress at 200 events/s
    hooks.finish(EventType.COMPLETED, output={})
    got = [_verified(r) for r in webhook_receiver.requests]
    kinds = [g["type"] for g in got]
    assert kinds[-1] == "completed"
    progress = [g for g in got if g["type"] == "progress"]
    assert 2 <= len(progress) <= 4  # ~1 s at ≤ 2 per second, plus the first one at once
    fractions = [p["progress"]["fraction"] for p in progress]
    assert fractions == sorted(fractions)
    assert all(p["status"] == "IN_PROGRESS" for p in progress)
    assert len({r.headers["webhook-id"] for r in webhook_receiver.requests}) == len(got)
    arrivals = [
        r.at
        for r in webhook_receiver.requests
        if r.headers["webhook-id"].startswith(f"msg_job-4_{hooks.attempt}_progress")
    ]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(gap >= 0.45 for gap in gaps), gaps  # 500 ms apart, less the receiver's own jitter


def test_progress_is_tried_once_and_the_terminal_event_still_arrives(webhook_receiver):
    """A progress message answered 503 is not retried; the completed event after it is delivered."""
    webhook_receiver.statuses = [503]
    hooks = _sender().for_job(_target(webhook_receiver.url), "job-8")
    hooks.progress({"stage": "shape", "fraction": 0.5, "eta_seconds": 3.0})
    assert len(webhook_receiver.wait_for(1)) == 1
    delivery = hooks.finish(EventType.COMPLETED, output={})
    assert delivery is not None
    assert delivery.delivered
    got = webhook_receiver.requests
    assert [(r.headers["webhook-id"], r.status) for r in got] == [
        (f"msg_job-8_{hooks.attempt}_progress_1", 503),
        (f"msg_job-8_{hooks.attempt}_completed", 200),
    ]
    (progress,) = [d for d in hooks.deliveries if d.event_type == "progress"]
    assert progress.attempts == 1


def test_a_slow_receiver_does_not_hold_the_job(webhook_receiver):
    """progress() returns at once while the receiver is stuck; finish() waits for the terminal delivery."""
    webhook_receiver.gate.clear()
    hooks = _sender().for_job(_target(webhook_receiver.url), "job-5")
    started = time.monotonic()
    for i in range(10):
        hooks.progress({"stage": "shape", "fraction": i / 10, "eta_seconds": 1.0})
    assert time.monotonic() - started < 0.5
    assert webhook_receiver.requests == []
    webhook_receiver.gate.set()
    delivery = hooks.finish(EventType.COMPLETED, output={})
    assert delivery is not None
    assert delivery.delivered


def test_connections_go_to_the_checked_address_with_the_original_host(webhook_receiver):
    """A name is resolved once, at parse time: the request goes to that address, Host kept."""
    port = int(webhook_receiver.url.split(":")[2].split("/")[0])
    lookups = []

    def resolver(host, p):
        lookups.append(host)
        return ["127.0.0.1"]

    target = _target(f"http://hooks.example.test:{port}/cb?token=abc", resolver=resolver)
    _sender().for_job(target, "job-6").finish(EventType.COMPLETED, output={})
    got = webhook_receiver.wait_for(1)
    assert got[0].headers["Host"] == f"hooks.example.test:{port}"
    assert got[0].path == "/cb?token=abc"
    assert lookups == ["hooks.example.test"]


def test_the_next_checked_address_is_tried_when_one_refuses(webhook_receiver):
    """A name with two addresses, the first refusing (as an AAAA without a route would), is reached
    on the second within the same try; the message arrives once."""
    port = int(webhook_receiver.url.split(":")[2].split("/")[0])
    two = lambda host, p: ["127.0.0.2", "127.0.0.1"]  # noqa: E731  (the receiver is on .1 only)
    target = _target(f"http://hooks.example.test:{port}/cb", resolver=two)
    delivery = _sender().for_job(target, "job-9").finish(EventType.COMPLETED, output={})
    assert delivery is not None
    assert delivery.delivered
    assert delivery.attempts == 1
    (got,) = webhook_receiver.wait_for(1)
    assert got.headers["Host"] == f"hooks.example.test:{port}"


def test_unsigned_when_no_secret_is_known(webhook_receiver):
    """Without a secret the message still carries webhook-id and timestamp, and no signature."""
    hooks = _sender().for_job(_target(webhook_receiver.url, secret=None), "job-7")
    hooks.finish(EventType.COMPLETED, output={})
    got = webhook_receiver.wait_for(1)[0]
    assert got.headers["webhook-id"] == f"msg_job-7_{hooks.attempt}_completed"
    assert "webhook-signature" not in got.headers
    assert json.loads(got.body)["status"] == "COMPLETED"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hook",
        "http://[::1]:{port}/x",
        "http://localhost:{port}/x",
    ],
)
def test_private_targets_are_refused_without_a_connection(webhook_receiver, url):
    """Loopback, metadata, private ranges and names resolving there are invalid_input; nothing sent."""
    port = int(webhook_receiver.url.split(":")[2].split("/")[0])
    with pytest.raises(InvalidInput) as info:
        parse_webhook({"url": url.format(port=port)})
    assert info.value.code == "invalid_input"
    assert info.value.field == "webhook.url"
    time.sleep(0.05)
    assert webhook_receiver.requests == []


def test_a_public_name_resolving_to_a_private_address_is_refused():
    """DNS answers are checked, not names: a public-looking name pointing at 10.0.0.1 is refused."""
    with pytest.raises(InvalidInput) as info:
        parse_webhook(
            "https://hooks.example.com/x", resolver=lambda host, port: ["93.184.216.34", "10.0.0.1"]
        )
    assert "non-public" in info.value.message
    assert info.value.field == "webhook"


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("ftp://example.com/x", "webhook"),
        ("not a url", "webhook"),
        ({"url": "https://example.com", "secret": "whsec_***"}, "webhook.secret"),
        ({"url": "https://example.com", "secret": "whsec_c2hvcnQ="}, "webhook.secret"),
        ({"url": "https://example.com", "token": "x"}, "webhook.token"),
        ({"secret": SECRET}, "webhook.url"),
        (42, "webhook"),
        ("https://example.com:99999/x", "webhook"),
    ],
)
def test_malformed_webhooks_name_the_field(value, field):
    """Bad schemes, secrets, unknown keys and ports are invalid_input with the field at fault."""
    with pytest.raises(InvalidInput) as info:
        parse_webhook(value, resolver=lambda host, port: ["93.184.216.34"])
    assert info.value.field == field


def test_the_default_secret_applies_when_the_input_names_none():
    """ORFEAS_WEBHOOK_SECRET signs webhooks whose input gives no secret; an input secret wins."""
    public = lambda host, port: ["93.184.216.34"]  # noqa: E731
    assert parse_webhook("https://e.com/x", default_secret=SECRET, resolver=public).secret == SECRET
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    assert (
        parse_webhook(
            {"url": "https://e.com/x", "secret": other}, default_secret=SECRET, resolver=public
        ).secret
        == other
    )


def test_each_run_of_a_job_names_its_messages_apart(webhook_receiver):
    """Two runs of one job id (RunPod /retry) send different webhook-ids and say which attempt they are."""
    first = _sender().for_job(_target(webhook_receiver.url), "job-r")
    first.finish(EventType.FAILED, error={"code": "x", "message": "first run"})
    second = _sender().for_job(_target(webhook_receiver.url), "job-r")
    second.finish(EventType.COMPLETED, output={})
    got = webhook_receiver.wait_for(2)
    ids = [r.headers["webhook-id"] for r in got]
    assert len(set(ids)) == 2
    assert [_verified(r)["attempt"] for r in got] == [first.attempt, second.attempt]
    assert first.attempt != second.attempt


@pytest.mark.parametrize("receiver", ["answers 500", "hangs"])
def test_the_terminal_webhook_holds_the_job_a_few_seconds_at_most(webhook_receiver, receiver):
    """Under the production retry policy, a receiver that fails or hangs holds finish() no longer than
    the terminal budget (5 s), not the ~110 s of every try timing out."""
    if receiver == "hangs":
        webhook_receiver.gate.clear()
    else:
        webhook_receiver.statuses = [500] * 50
    sender = WebhookSender(terminal_budget_s=1.5)
    hooks = sender.for_job(_target(webhook_receiver.url), "job-slow")
    started = time.monotonic()
    delivery = hooks.finish(EventType.COMPLETED, output={})
    took = time.monotonic() - started
    assert took < 1.5 + 0.5, took
    assert delivery is None or not delivery.delivered
    assert WebhookSender().terminal_budget_s == 5.0


def test_the_stated_terminal_retry_budget_is_about_a_minute():
    """The production policy waits under a minute in all across its 5 tries, as its comment states."""
    assert TERMINAL_WEBHOOK_BACKOFF.attempts == 5
    assert 40 <= TERMINAL_WEBHOOK_BACKOFF.worst_case_wait_s() <= 60


def _tls_files(tmp_path, name):
    """A throwaway CA and a server certificate for `name`, as PEM files."""
    import datetime

    from tests.inputs_support import cert_pem, issue_certificate, key_pem

    valid = (datetime.timedelta(minutes=5), datetime.timedelta(hours=1))
    ca, ca_key = issue_certificate("orfeas test CA", [], ca=True, valid=valid)
    cert, key = issue_certificate(name, [name], issuer=(ca.subject, ca_key), valid=valid)
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_file.write_bytes(cert_pem(ca))
    cert_file.write_bytes(cert_pem(cert))
    key_file.write_bytes(key_pem(key))
    return str(ca_file), str(cert_file), str(key_file)


@pytest.fixture
def tls_receiver(tmp_path):
    """HTTPS receiver on loopback, its certificate for hooks.example.test; yields (port, CA, receiver)."""
    import ssl

    ca, cert, key = _tls_files(tmp_path, "hooks.example.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with serve_receiver(default_status=204, tls=context) as receiver:
        yield receiver.port, ca, receiver


def test_https_to_the_pinned_address_checks_the_certificate_name(tls_receiver):
    """Over TLS the pinned connection presents and verifies the URL's name; a name the cert lacks fails."""
    from orfeas_worker.webhooks import ClientTransport

    port, ca, receiver = tls_receiver
    sender = WebhookSender(transport=ClientTransport(ca_file=ca), backoff=FAST, terminal_timeout_s=2.0)
    loopback = lambda host, p: ["127.0.0.1"]  # noqa: E731
    good = parse_webhook(f"https://hooks.example.test:{port}/cb", allow_private=True, resolver=loopback)
    delivery = sender.for_job(good, "job-tls").finish(EventType.COMPLETED, output={})
    assert delivery is not None
    assert delivery.delivered
    assert receiver.requests[0].headers["Host"] == f"hooks.example.test:{port}"
    wrong = parse_webhook(f"https://other.example.test:{port}/cb", allow_private=True, resolver=loopback)
    refused = sender.for_job(wrong, "job-tls-wrong")
    result = refused.finish(EventType.COMPLETED, output={})
    assert result is not None
    assert not result.delivered
    assert result.attempts == 1  # a wrong certificate is not retried
    assert "certificate" in (result.error or "").lower() or "hostname" in (result.error or "").lower()
    assert len(receiver.requests) == 1
