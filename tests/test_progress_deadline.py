"""Progress spans, ETA and deadlines."""

import itertools

import pytest

from orfeas.deadline import Deadline
from orfeas.errors import StageTimeout
from orfeas.progress import STAGE_SPANS, ProgressTracker


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_spans_cover_the_job_in_order_without_gaps():
    """Stage spans run from 0 to 1 back to back, with the documented shares."""
    spans = list(STAGE_SPANS.values())
    assert spans[0][0] == 0.0
    assert spans[-1][1] == 1.0
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert STAGE_SPANS["shape"] == (0.10, 0.60)
    assert STAGE_SPANS["texture"] == (0.60, 0.90)
    assert STAGE_SPANS["export"] == (0.90, 1.00)


def test_stage_fraction_maps_into_its_span_with_an_eta():
    """Half of the shape stage is 35 % of the job, and the ETA extrapolates elapsed time."""
    events = []
    clock = FakeClock()
    tracker = ProgressTracker(events.append, clock)
    clock.now += 7.0
    tracker.report("shape", 0.5)
    assert events[-1].fraction == pytest.approx(0.35)
    assert events[-1].eta_seconds == pytest.approx(7.0 * 0.65 / 0.35, abs=0.1)


def test_progress_never_goes_backwards():
    """A later report with a lower fraction is raised to the last one sent."""
    events = []
    tracker = ProgressTracker(events.append, FakeClock())
    tracker.report("texture", 0.5)
    tracker.report("shape", 0.1)
    assert events[-1].fraction == events[-2].fraction == pytest.approx(0.75)


def test_eta_is_withheld_at_the_very_start():
    """Before 2 % of the job the ETA is None rather than a wild guess."""
    events = []
    ProgressTracker(events.append, FakeClock()).report("input", 0.5)
    assert events[0].eta_seconds is None


def test_deadline_expires_and_check_names_the_stage():
    """Once the clock passes the deadline, check raises stage_timeout naming the stage."""
    clock = FakeClock()
    d = Deadline(5.0, clock)
    d.check("shape")
    clock.now += 5.1
    with pytest.raises(StageTimeout) as info:
        d.check("shape")
    assert str(info.value).startswith("stage_timeout: shape: ")
    assert info.value.fatal


def test_earliest_takes_the_smaller_limit():
    """The stage limit is the smaller of its own limit and what is left of the job."""
    clock = FakeClock()
    d = Deadline(10.0, clock)
    assert d.earliest(3.0) == 3.0
    clock.now += 8.0
    assert d.earliest(3.0) == pytest.approx(2.0)
    assert Deadline(None, clock).earliest(None) is None
