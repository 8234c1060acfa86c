"""The one job-status vocabulary shared by the worker, its webhooks and the callback server.

The values are RunPod's own status names, so a RunPod envelope maps onto them unchanged.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its life; a job only ever moves to a higher rank."""

    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def rank(self) -> int:
        """Order used to refuse backward moves: queued < in progress < any terminal state."""
        if self is JobStatus.IN_QUEUE:
            return 0
        if self is JobStatus.IN_PROGRESS:
            return 1
        return 2

    def can_move_to(self, new: JobStatus) -> bool:
        """True when `new` is a forward move (a terminal state is final, even to another one)."""
        return not self.is_terminal and new.rank > self.rank

    def __str__(self) -> str:
        return self.value


_TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT})
