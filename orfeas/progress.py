"""Progress reporting: each stage owns a span of the job's 0..1 progress and reports inside it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# (start, end) of each stage in the job's overall progress.
# Background removal, with the input decoding and optional text-to-image before it, owns 0-10 %.
STAGE_SPANS: dict[str, tuple[float, float]] = {
    "input": (0.00, 0.02),
    "text_to_image": (0.02, 0.06),
    "background": (0.06, 0.10),
    "shape": (0.10, 0.60),
    "texture": (0.60, 0.90),
    "export": (0.90, 1.00),
}


@dataclass(frozen=True)
class ProgressEvent:
    stage: str
    fraction: float  # of the whole job, 0..1
    eta_seconds: float | None


ProgressSink = Callable[[ProgressEvent], None]


def discard_progress(event: ProgressEvent) -> None:
    """A sink that ignores progress."""


class ProgressTracker:
    """Maps a stage's own 0..1 progress onto the job's span and estimates the time left.

    The estimate is a linear extrapolation of elapsed time over overall progress; it is None
    until 2 % of the job is done (earlier guesses swing too widely to be useful).
    """

    def __init__(self, sink: ProgressSink, clock: Callable[[], float] = time.monotonic) -> None:
        self._sink = sink
        self._clock = clock
        self._start = clock()
        self._last = 0.0

    def report(self, stage: str, stage_fraction: float) -> None:
        lo, hi = STAGE_SPANS[stage]
        fraction = lo + (hi - lo) * min(max(stage_fraction, 0.0), 1.0)
        fraction = max(fraction, self._last)  # never report going backwards
        self._last = fraction
        elapsed = self._clock() - self._start
        eta = None
        if fraction >= 0.02:
            eta = round(elapsed * (1.0 - fraction) / fraction, 1)
        self._sink(ProgressEvent(stage, fraction, eta))

    def for_stage(self, stage: str) -> Callable[[float], None]:
        return lambda f: self.report(stage, f)
