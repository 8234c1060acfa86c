"""Signed job callbacks: progress (best effort, ≤ 2 per second) and one terminal event (retried).

Each job that names a webhook gets one sender thread, so the pipeline never waits on a slow
receiver. Progress is coalesced: the thread sends the latest state at most every 500 ms and
tries once. The terminal `completed`/`failed` event goes through the same thread (so no late
progress can overtake it) and is retried per TERMINAL_WEBHOOK_BACKOFF, within TERMINAL_BUDGET_S.

The handler waits for the terminal delivery before it returns (RunPod may freeze or stop the
worker as soon as the handler returns, which would lose a delivery still in flight), but never
more than TERMINAL_BUDGET_S (5 s) from the moment the job ended: every try's timeout and every
wait between tries fit in it. A receiver that is down or hangs costs the GPU 5 s, not the ~110 s
of the whole retry policy. The result is not lost with it: the handler returns it to RunPod on
time, and RunPod's own webhook (the server's /callbacks/runpod, named at submit) and the server's
/status polls carry it to the callback server.

Each run of a job is an attempt with its own id (RunPod's job dict carries no attempt number, and
/retry runs the same job id again): the attempt's start time in milliseconds and a random part.
Message ids are `msg_{job_id}_{attempt}_…` and the events carry `attempt`, so a retried job's
events are not taken for duplicates of the first run's.

Messages follow Standard Webhooks: `webhook-id` is fixed per message and kept across retries,
`webhook-timestamp` is the try's time, `webhook-signature` is v1 HMAC-SHA256 over
`id.timestamp.body`. A failing webhook is logged and never fails the job.

Targets are checked against orfeas_contract.netguard when the input is parsed, and every try goes
through the contract's outbound client (orfeas_contract.outbound) to those checked addresses
(Host header and TLS name kept), so DNS cannot swap in a private one afterwards. Redirects are
not followed: a 3xx could point anywhere.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orfeas import __version__
from orfeas.errors import InvalidInput
from orfeas.retry_policy import TERMINAL_WEBHOOK_BACKOFF, Backoff, is_retryable_status
from orfeas_contract.errors import ErrorInfo
from orfeas_contract.events import EventType, make_event
from orfeas_contract.job_state import JobEvent, Progress
from orfeas_contract.netguard import Resolver, system_resolver
from orfeas_contract.outbound import (
    InvalidURL,
    OutboundClient,
    RefusedAddress,
    TimedOut,
    TLSError,
    TransportError,
    parse_url,
    resolve_public,
)
from orfeas_contract.webhook_signing import check_secret, signature_headers

log = logging.getLogger("orfeas.webhooks")

PROGRESS_INTERVAL_S = 0.5
PROGRESS_TIMEOUT_S = 2.0  # a progress try is not worth holding the terminal event back longer
TERMINAL_TIMEOUT_S = 10.0
# The longest the handler waits for its terminal webhook, counted from the end of the job: a
# progress try in flight, then every terminal try and wait. RunPod's own webhook and /status
# carry the result when this one does not arrive in time.
TERMINAL_BUDGET_S = 5.0
MAX_URL_LENGTH = 2048


def new_attempt_id() -> str:
    """An id for one run of a job: its start in milliseconds (hex, so later runs sort later) and
    16 random bits (two runs starting in the same millisecond on two workers still differ)."""
    return f"{time.time_ns() // 1_000_000:x}{secrets.token_hex(2)}"


@dataclass(frozen=True)
class WebhookTarget:
    """A checked callback URL: the public addresses it resolved to (or any, with
    `allow_private`), and its secret."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]
    secret: str | None = None
    allow_private: bool = False


def parse_webhook(
    value: Any,
    *,
    default_secret: str | None = None,
    allow_private: bool = False,
    resolver: Resolver = system_resolver,
) -> WebhookTarget:
    """Validate `"https://…"` or `{"url": …, "secret": "whsec_…"}`; refuse private targets unless allowed."""
    secret = default_secret
    if isinstance(value, dict):
        unknown = set(value) - {"url", "secret"}
        if unknown:
            raise InvalidInput("unknown field", field=f"webhook.{sorted(unknown)[0]}")
        if "secret" in value and value["secret"] is not None:
            secret = _check_secret(value["secret"])
        url = value.get("url")
        field_name = "webhook.url"
    else:
        url, field_name = value, "webhook"
    if not isinstance(url, str) or not url:
        raise InvalidInput("give the webhook as a URL string or {url, secret}", field=field_name)
    try:
        parts = parse_url(url, schemes=("http", "https"), max_length=MAX_URL_LENGTH)
    except InvalidURL as exc:
        raise InvalidInput(exc.message, field=field_name) from None
    addresses = resolve_public(
        parts.host, parts.port, field=field_name, resolver=resolver, allow_private=allow_private
    )
    return WebhookTarget(
        url=url,
        host=parts.host,
        port=parts.port,
        addresses=tuple(addresses),
        secret=secret,
        allow_private=allow_private,
    )


def _check_secret(secret: Any) -> str:
    try:
        return check_secret(secret)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="webhook.secret") from None


# -- transport ------------------------------------------------------------------------------
# (target, body, headers, timeout) -> HTTP status; raises OutboundError (or OSError) when no answer.
Transport = Callable[[WebhookTarget, bytes, dict[str, str], float], int]


class ClientTransport:
    """POSTs through the contract's outbound client to the addresses checked at parse time (checked
    again under the policy they were parsed with), Host header and TLS server name kept; a redirect
    is returned as its status, never followed. One deadline covers the try, whatever the number of
    addresses, so the sender's bound on a delivery (tries x timeout + waits) holds. Certificates are
    verified against the system's CAs, or against `ca_file` (a PEM file) when given."""

    def __init__(self, ca_file: str | None = None) -> None:
        agent = f"orfeas-worker/{__version__}"
        self._clients = {
            allow: OutboundClient(allow_private=allow, ca_file=ca_file, user_agent=agent)
            for allow in (False, True)
        }

    def __call__(self, target: WebhookTarget, body: bytes, headers: dict[str, str], timeout: float) -> int:
        client = self._clients[target.allow_private]
        with client.open(
            "POST", target.url, timeout_s=timeout, body=body, headers=headers, addresses=target.addresses
        ) as response:
            return response.status  # the body is not read: the status is the answer


client_transport = ClientTransport()


# -- delivery -------------------------------------------------------------------------------
@dataclass
class WebhookReport:
    """What happened to one message (for logs and tests)."""

    msg_id: str
    event_type: str
    attempts: int = 0
    status: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _RetryableAnswer(Exception):
    """The receiver answered with a status that may change (429, 5xx, ...)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class _OutOfTime(Exception):
    """The terminal budget is spent: no further try."""


class _PermanentAnswer(Exception):
    """The receiver answered with a status that will not change (4xx, 3xx)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _retryable(exc: BaseException) -> bool:
    """Retry an answer that says "later", and no answer at all (refused, reset, timed out);
    not a certificate that does not match: the next try would meet the same one."""
    if isinstance(exc, TLSError | RefusedAddress | InvalidURL):
        return False
    return isinstance(exc, _RetryableAnswer | TransportError | TimedOut | OSError)


@dataclass
class WebhookSender:
    """Process-wide delivery settings; `for_job` makes one job's sender."""

    transport: Transport = client_transport
    backoff: Backoff = TERMINAL_WEBHOOK_BACKOFF
    progress_interval_s: float = PROGRESS_INTERVAL_S
    progress_timeout_s: float = PROGRESS_TIMEOUT_S
    terminal_timeout_s: float = TERMINAL_TIMEOUT_S
    terminal_budget_s: float = TERMINAL_BUDGET_S
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def for_job(self, target: WebhookTarget, job_id: str, attempt: str | None = None) -> JobWebhooks:
        return JobWebhooks(self, target, job_id, attempt=attempt or new_attempt_id())

    def deliver(
        self,
        target: WebhookTarget,
        msg_id: str,
        event: JobEvent,
        *,
        retry: bool,
        deadline: float | None = None,
    ) -> WebhookReport:
        """Send one message now; a terminal one is retried under the backoff, every try and wait
        ending by `deadline` (on `clock`) when given. Never raises."""
        body = json.dumps(event, separators=(",", ":")).encode("utf-8")
        delivery = WebhookReport(msg_id=msg_id, event_type=str(event["type"]))
        timeout = self.terminal_timeout_s if retry else self.progress_timeout_s
        backoff = self.backoff if retry else Backoff(attempts=1, initial_s=0.0, max_s=0.0)

        def left() -> float:
            return timeout if deadline is None else min(timeout, deadline - self.clock())

        def sleep(seconds: float) -> None:
            # A wait that would end past the deadline ends the retries instead.
            if deadline is not None and self.clock() + seconds >= deadline:
                raise _OutOfTime(f"no time left for another try within {self.terminal_budget_s:g} s")
            self.sleep(seconds)

        def attempt() -> None:
            if left() <= 0:
                raise _OutOfTime(f"no time left for a try within {self.terminal_budget_s:g} s")
            delivery.attempts += 1
            headers = {
                "Content-Type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(time.time())),
            }
            if target.secret:
                # Signed afresh on every try: the timestamp is the try's, the id stays the message's.
                headers.update(signature_headers(target.secret, msg_id, body))
            status = self.transport(target, body, headers, left())
            delivery.status = status
            if 200 <= status < 300:
                return
            raise _RetryableAnswer(status) if is_retryable_status(status) else _PermanentAnswer(status)

        try:
            for tries in backoff.retrying(_retryable, sleep=sleep):
                with tries:
                    attempt()
        except Exception as exc:
            delivery.error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "webhook %s (%s) for %s not delivered after %d tries: %s",
                msg_id,
                delivery.event_type,
                target.host,
                delivery.attempts,
                delivery.error,
            )
        return delivery


@dataclass
class JobWebhooks:
    """One job's callbacks, sent in order from one background thread."""

    sender: WebhookSender
    target: WebhookTarget
    job_id: str
    attempt: str = field(default_factory=new_attempt_id)
    deliveries: list[WebhookReport] = field(default_factory=list)
    _pending: Progress | None = None
    _terminal: JobEvent | None = None
    _deadline: float | None = None  # on the sender's clock: when finish() stops waiting
    _seq: int = 0
    _last_sent: float | None = None
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None

    def progress(self, info: Progress) -> None:
        """Queue the latest progress; older unsent progress is replaced. Returns at once."""
        with self._cond:
            if self._terminal is not None:
                return
            self._pending = info
            self._start()
            self._cond.notify()

    def finish(
        self,
        event_type: EventType,
        *,
        output: dict[str, Any] | None = None,
        error: ErrorInfo | None = None,
        progress: Progress | None = None,
    ) -> WebhookReport | None:
        """Send the terminal event (after any progress being sent) and wait for its delivery, at
        most the sender's terminal budget; past it the delivery is abandoned (None or undelivered)."""
        event = make_event(
            event_type, self.job_id, progress=progress, output=output, error=error, attempt=self.attempt
        )
        with self._cond:
            self._deadline = self.sender.clock() + self.sender.terminal_budget_s
            self._terminal = event
            self._pending = None  # stale now: the terminal event says where the job ended
            self._start()
            self._cond.notify()
            thread = self._thread
        assert thread is not None
        thread.join(self.max_wait_s())
        return next((d for d in self.deliveries if d.event_type == event_type.value), None)

    def max_wait_s(self) -> float:
        """The longest `finish` waits: the terminal budget (a progress try in flight included)."""
        return self.sender.terminal_budget_s

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"webhooks-{self.job_id}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and self._terminal is None:
                    self._cond.wait()
                if self._terminal is not None:
                    terminal = self._terminal
                    break
                wait = self._until_next_progress()
                if wait > 0:
                    self._cond.wait(wait)  # woken early by a terminal event, which wins
                    continue
                info, self._pending = self._pending, None
                self._seq += 1
                msg_id = f"msg_{self.job_id}_{self.attempt}_progress_{self._seq}"
            assert info is not None
            event = make_event(EventType.PROGRESS, self.job_id, progress=info, attempt=self.attempt)
            self.deliveries.append(self.sender.deliver(self.target, msg_id, event, retry=False))
            self._last_sent = self.sender.clock()
        msg_id = f"msg_{self.job_id}_{self.attempt}_{terminal['type']}"
        delivery = self.sender.deliver(self.target, msg_id, terminal, retry=True, deadline=self._deadline)
        self.deliveries.append(delivery)

    def _until_next_progress(self) -> float:
        if self._last_sent is None:
            return 0.0
        return self._last_sent + self.sender.progress_interval_s - self.sender.clock()
