"""Bounded retries with exponential backoff and jitter, and which failures are worth retrying.

Only what must arrive is retried: artifact uploads and reads (a job's output is worthless if it
is not stored) and terminal webhooks. Progress webhooks are sent once. Every policy is bounded,
both in tries and in the time spent waiting between them, so a dead peer cannot hold a job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import tenacity

# botocore error codes that mean "slow down" rather than "you are wrong".
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "SlowDown",
        "PriorRequestNotComplete",
    }
)
TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable"}
)


@dataclass(frozen=True)
class Backoff:
    """`attempts` tries; before try n+1 wait min(initial * base**(n-1) + U(0, jitter), max) seconds."""

    attempts: int
    initial_s: float
    max_s: float
    exp_base: float = 2.0
    jitter_s: float = 0.0

    def waits(self) -> list[float]:
        """Upper bound of each wait between tries (jitter at its largest)."""
        return [
            min(self.initial_s * self.exp_base ** (n - 1) + self.jitter_s, self.max_s)
            for n in range(1, self.attempts)
        ]

    def worst_case_wait_s(self) -> float:
        return sum(self.waits())

    def retrying(
        self, retry_if: Callable[[BaseException], bool], *, sleep: Callable[[float], None] = time.sleep
    ) -> tenacity.Retrying:
        """A tenacity loop that re-raises the last error once the tries are spent."""
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_exponential_jitter(
                multiplier=self.initial_s, max=self.max_s, exp_base=self.exp_base, jitter=self.jitter_s
            ),
            retry=tenacity.retry_if_exception(retry_if),
            reraise=True,
            sleep=sleep,
        )


# Storage: 5 tries, waiting at most 0.45 + 0.85 + 1.65 + 2.0 = 4.95 s in all. S3 asks clients that
# get SlowDown to back off for about a second; a 503 burst from a busy endpoint passes in that time.
STORAGE_BACKOFF = Backoff(attempts=5, initial_s=0.2, max_s=2.0, jitter_s=0.25)

# Terminal webhooks: 5 tries, waiting at most 3 + 7 + 19 + 30 = 59 s in all, plus each try's own
# request timeout (10 s). The worker stops at orfeas_worker.webhooks.TERMINAL_BUDGET_S (5 s) in all,
# which leaves the first two tries: RunPod's own webhook and /status carry the result after that.
TERMINAL_WEBHOOK_BACKOFF = Backoff(attempts=5, initial_s=2.0, max_s=30.0, exp_base=3.0, jitter_s=1.0)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error and what caused it (boto3's transfer manager wraps the original ClientError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_retryable_storage_error(exc: BaseException) -> bool:
    """True for throttling, 5xx, timeouts and broken connections seen by botocore."""
    from botocore.exceptions import (
        ClientError,
        ConnectionError,
        HTTPClientError,
        IncompleteReadError,
        ResponseStreamingError,
    )

    for err in _chain(exc):
        if isinstance(err, HTTPClientError | ConnectionError | IncompleteReadError | ResponseStreamingError):
            return True
        if isinstance(err, ClientError):
            code = str(err.response.get("Error", {}).get("Code", ""))
            status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            return code in THROTTLING_CODES or code in TRANSIENT_CODES or is_retryable_status(status)
    return False


def is_retryable_status(status: int) -> bool:
    """HTTP answers that may succeed later: 408 timeout, 425 too early, 429 throttled, any 5xx."""
    return status in (408, 425, 429) or 500 <= status <= 599
