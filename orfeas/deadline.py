"""Deadlines: a stage checks its context between steps and stops with StageTimeout when over time."""

from __future__ import annotations

import time
from collections.abc import Callable

from orfeas.errors import StageTimeout


class Deadline:
    """An absolute point in time (monotonic clock); `None` seconds means no limit."""

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._at = None if seconds is None else clock() + seconds

    def remaining(self) -> float | None:
        return None if self._at is None else self._at - self._clock()

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0

    def earliest(self, seconds: float | None) -> float | None:
        """The smaller of this deadline's remaining time and `seconds`."""
        left = self.remaining()
        if left is None:
            return seconds
        if seconds is None:
            return max(left, 0.0)
        return max(min(left, seconds), 0.0)

    def check(self, stage: str) -> None:
        if self.expired():
            raise StageTimeout("the job's deadline passed during this stage", stage=stage)
