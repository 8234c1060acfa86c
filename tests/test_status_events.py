"""The shared job-status enum and event shape."""

import pytest

from orfeas_contract.events import EventType, make_event
from orfeas_contract.status import JobStatus


def test_terminal_states_are_exactly_the_four_endings():
    """COMPLETED, FAILED, CANCELLED and TIMED_OUT are terminal; queued and running are not."""
    terminal = {s for s in JobStatus if s.is_terminal}
    assert terminal == {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT}


@pytest.mark.parametrize(
    ("old", "new", "allowed"),
    [
        (JobStatus.IN_QUEUE, JobStatus.IN_PROGRESS, True),
        (JobStatus.IN_QUEUE, JobStatus.COMPLETED, True),
        (JobStatus.IN_PROGRESS, JobStatus.FAILED, True),
        (JobStatus.IN_PROGRESS, JobStatus.IN_QUEUE, False),
        (JobStatus.IN_PROGRESS, JobStatus.IN_PROGRESS, False),
        (JobStatus.COMPLETED, JobStatus.FAILED, False),
        (JobStatus.COMPLETED, JobStatus.IN_PROGRESS, False),
        (JobStatus.TIMED_OUT, JobStatus.COMPLETED, False),
    ],
)
def test_status_only_moves_forward(old, new, allowed):
    """A job moves only to a higher rank, and never out of a terminal state."""
    assert old.can_move_to(new) is allowed


def test_status_is_its_runpod_name_as_text():
    """The enum's string form is RunPod's own status string."""
    assert str(JobStatus.IN_QUEUE) == "IN_QUEUE"
    assert JobStatus("COMPLETED") is JobStatus.COMPLETED


def test_completed_event_carries_output_and_terminal_status():
    """A completed event is the job-state document: status COMPLETED, the output, a null error."""
    event = make_event(EventType.COMPLETED, "job-1", output={"meshes": {}})
    assert event == {
        "type": "completed",
        "id": "job-1",
        "job_id": "job-1",
        "error": None,
        "status": "COMPLETED",
        "progress": None,
        "output": {"meshes": {}},
    }
    assert EventType.COMPLETED.is_terminal
    assert not EventType.PROGRESS.is_terminal


def test_event_refuses_output_on_a_failure():
    """Output belongs to completed events and error to failed ones; mixing them is refused."""
    with pytest.raises(ValueError, match="output"):
        make_event(EventType.FAILED, "j", output={}, error={"code": "x", "message": "y"})
    with pytest.raises(ValueError, match="error"):
        make_event(EventType.FAILED, "j")
